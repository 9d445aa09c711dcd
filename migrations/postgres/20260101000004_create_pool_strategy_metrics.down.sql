DROP TABLE IF EXISTS pool_strategy_metrics;
