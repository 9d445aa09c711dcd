-- Per-pool, per-strategy snapshots written by the coordinator; the optimizer reads them and
-- retention deletes rows older than POOL_MANAGER_METRICS_RETENTION_DAYS.
CREATE TABLE IF NOT EXISTS pool_strategy_metrics (
    id                 BIGSERIAL PRIMARY KEY,
    pool_id            TEXT,
    server_id          TEXT NOT NULL,
    strategy           TEXT NOT NULL,
    recorded_at        TIMESTAMPTZ NOT NULL,
    window_seconds     INTEGER NOT NULL,
    acquisitions       BIGINT NOT NULL DEFAULT 0,
    timeouts           BIGINT NOT NULL DEFAULT 0,
    errors             BIGINT NOT NULL DEFAULT 0,
    rebinds            BIGINT NOT NULL DEFAULT 0,
    wait_p50_ms        DOUBLE PRECISION,
    wait_p95_ms        DOUBLE PRECISION,
    wait_p99_ms        DOUBLE PRECISION,
    utilization        DOUBLE PRECISION,
    utilization_skew   DOUBLE PRECISION,
    reuse_rate         DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS pool_strategy_metrics_server_time_idx ON pool_strategy_metrics (server_id, recorded_at);
CREATE INDEX IF NOT EXISTS pool_strategy_metrics_time_idx ON pool_strategy_metrics (recorded_at);
