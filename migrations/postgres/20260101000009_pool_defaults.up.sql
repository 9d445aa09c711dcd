-- Pool fields a server never set explicitly follow POOL_DEFAULT_* (resolved when the row is
-- read). Recorded as "field=value" pairs, comma-separated, with the value written to the column
-- at the time: a column changed since (directly in SQL) is explicit again.
ALTER TABLE servers ADD COLUMN pool_defaults TEXT NOT NULL DEFAULT '';
