ALTER TABLE servers DROP COLUMN pool_auto_optimize;
ALTER TABLE pool_strategy_metrics DROP COLUMN miss_penalty_ms;
ALTER TABLE pool_strategy_metrics DROP COLUMN affinity_hit_rate;
ALTER TABLE pool_strategy_metrics DROP COLUMN returning_share;
ALTER TABLE pool_strategy_metrics DROP COLUMN endpoint_spread;
ALTER TABLE pool_strategy_metrics DROP COLUMN hold_p99_ms;
ALTER TABLE pool_strategy_metrics DROP COLUMN hold_p50_ms;
