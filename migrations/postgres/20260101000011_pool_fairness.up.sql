-- Per-user quotas, the unused-session TTL and the per-user rate limit (issue: fair under abuse).
-- Quotas: -1 = auto (half of the pool), 0 = unlimited, n = at most n per user.
ALTER TABLE servers ADD COLUMN pool_max_sessions_per_user INTEGER NOT NULL DEFAULT -1;
ALTER TABLE servers ADD COLUMN pool_max_inflight_per_user INTEGER NOT NULL DEFAULT -1;
ALTER TABLE servers ADD COLUMN pool_unused_ttl INTEGER NOT NULL DEFAULT 60;
ALTER TABLE servers ADD COLUMN pool_rate_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE servers ADD COLUMN pool_rate_burst INTEGER NOT NULL DEFAULT 0;
