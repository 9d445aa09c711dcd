ALTER TABLE servers DROP COLUMN pool_rate_burst;
ALTER TABLE servers DROP COLUMN pool_rate_limit;
ALTER TABLE servers DROP COLUMN pool_unused_ttl;
ALTER TABLE servers DROP COLUMN pool_max_inflight_per_user;
ALTER TABLE servers DROP COLUMN pool_max_sessions_per_user;
