-- The optimizer's inputs: request-time percentiles, endpoint spread and user affinity per
-- snapshot, and the per-pool switch that lets it apply its recommendation.
ALTER TABLE pool_strategy_metrics ADD COLUMN hold_p50_ms REAL;
ALTER TABLE pool_strategy_metrics ADD COLUMN hold_p99_ms REAL;
ALTER TABLE pool_strategy_metrics ADD COLUMN endpoint_spread REAL;
ALTER TABLE pool_strategy_metrics ADD COLUMN returning_share REAL;
ALTER TABLE pool_strategy_metrics ADD COLUMN affinity_hit_rate REAL;
ALTER TABLE pool_strategy_metrics ADD COLUMN miss_penalty_ms REAL;
ALTER TABLE servers ADD COLUMN pool_auto_optimize BOOLEAN NOT NULL DEFAULT FALSE;
