ALTER TABLE servers DROP COLUMN pool_defaults;
