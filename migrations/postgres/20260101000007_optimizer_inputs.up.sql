-- The optimizer's inputs: request-time percentiles, endpoint spread and user affinity per
-- snapshot, and the per-pool switch that lets it apply its recommendation.
ALTER TABLE pool_strategy_metrics ADD COLUMN hold_p50_ms DOUBLE PRECISION;
ALTER TABLE pool_strategy_metrics ADD COLUMN hold_p99_ms DOUBLE PRECISION;
ALTER TABLE pool_strategy_metrics ADD COLUMN endpoint_spread DOUBLE PRECISION;
ALTER TABLE pool_strategy_metrics ADD COLUMN returning_share DOUBLE PRECISION;
ALTER TABLE pool_strategy_metrics ADD COLUMN affinity_hit_rate DOUBLE PRECISION;
ALTER TABLE pool_strategy_metrics ADD COLUMN miss_penalty_ms DOUBLE PRECISION;
ALTER TABLE servers ADD COLUMN pool_auto_optimize BOOLEAN NOT NULL DEFAULT FALSE;
