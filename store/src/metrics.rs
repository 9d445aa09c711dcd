//! `pool_strategy_metrics`: the coordinator's per-pool, per-strategy snapshots (what the
//! optimizer reads) and their retention.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{with_db, Store, StoreError};

/// One snapshot row: counters are deltas over `window_seconds`; ratios may be unknown.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StrategySnapshot {
    pub pool_id: Option<String>,
    pub server_id: String,
    pub strategy: String,
    pub recorded_at: DateTime<Utc>,
    pub window_seconds: i32,
    pub acquisitions: i64,
    pub timeouts: i64,
    pub errors: i64,
    pub rebinds: i64,
    pub wait_p50_ms: Option<f64>,
    pub wait_p95_ms: Option<f64>,
    pub wait_p99_ms: Option<f64>,
    pub utilization: Option<f64>,
    pub utilization_skew: Option<f64>,
    pub reuse_rate: Option<f64>,
    /// Request time (lease hold) percentiles in the window.
    pub hold_p50_ms: Option<f64>,
    pub hold_p99_ms: Option<f64>,
    /// Slowest endpoint's mean request time over the fastest's (endpoints with enough requests).
    pub endpoint_spread: Option<f64>,
    /// Share of requests whose user had been seen before (shared isolation).
    pub returning_share: Option<f64>,
    /// Share of returning users' requests that landed on their previous slot.
    pub affinity_hit_rate: Option<f64>,
    /// Mean request time of returning users on another slot minus on their previous slot (ms).
    pub miss_penalty_ms: Option<f64>,
}

impl Store {
    pub async fn insert_snapshot(&self, s: &StrategySnapshot) -> Result<(), StoreError> {
        with_db!(self, |pool, _d| {
            sqlx::query(
                "INSERT INTO pool_strategy_metrics (pool_id, server_id, strategy, recorded_at, window_seconds, \
                 acquisitions, timeouts, errors, rebinds, wait_p50_ms, wait_p95_ms, wait_p99_ms, utilization, \
                 utilization_skew, reuse_rate, hold_p50_ms, hold_p99_ms, endpoint_spread, returning_share, \
                 affinity_hit_rate, miss_penalty_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                 $14, $15, $16, $17, $18, $19, $20, $21)",
            )
            .bind(s.pool_id.clone())
            .bind(s.server_id.clone())
            .bind(s.strategy.clone())
            .bind(s.recorded_at)
            .bind(s.window_seconds)
            .bind(s.acquisitions)
            .bind(s.timeouts)
            .bind(s.errors)
            .bind(s.rebinds)
            .bind(s.wait_p50_ms)
            .bind(s.wait_p95_ms)
            .bind(s.wait_p99_ms)
            .bind(s.utilization)
            .bind(s.utilization_skew)
            .bind(s.reuse_rate)
            .bind(s.hold_p50_ms)
            .bind(s.hold_p99_ms)
            .bind(s.endpoint_spread)
            .bind(s.returning_share)
            .bind(s.affinity_hit_rate)
            .bind(s.miss_penalty_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Deletes snapshots recorded before `cutoff`; returns how many.
    pub async fn delete_snapshots_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        with_db!(self, |pool, _d| {
            let done = sqlx::query("DELETE FROM pool_strategy_metrics WHERE recorded_at < $1")
                .bind(cutoff)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// A server's snapshots, newest first.
    pub async fn list_snapshots(&self, server_id: &str, limit: i64) -> Result<Vec<StrategySnapshot>, StoreError> {
        with_db!(self, |pool, _d| {
            let rows = sqlx::query(
                "SELECT pool_id, server_id, strategy, recorded_at, window_seconds, acquisitions, timeouts, errors, \
                 rebinds, wait_p50_ms, wait_p95_ms, wait_p99_ms, utilization, utilization_skew, reuse_rate, \
                 hold_p50_ms, hold_p99_ms, endpoint_spread, returning_share, affinity_hit_rate, miss_penalty_ms FROM pool_strategy_metrics WHERE server_id = $1 ORDER BY recorded_at DESC, id DESC LIMIT $2",
            )
            .bind(server_id)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(StrategySnapshot {
                    pool_id: r.try_get("pool_id")?,
                    server_id: r.try_get("server_id")?,
                    strategy: r.try_get("strategy")?,
                    recorded_at: r.try_get("recorded_at")?,
                    window_seconds: r.try_get("window_seconds")?,
                    acquisitions: r.try_get("acquisitions")?,
                    timeouts: r.try_get("timeouts")?,
                    errors: r.try_get("errors")?,
                    rebinds: r.try_get("rebinds")?,
                    wait_p50_ms: r.try_get("wait_p50_ms")?,
                    wait_p95_ms: r.try_get("wait_p95_ms")?,
                    wait_p99_ms: r.try_get("wait_p99_ms")?,
                    utilization: r.try_get("utilization")?,
                    utilization_skew: r.try_get("utilization_skew")?,
                    reuse_rate: r.try_get("reuse_rate")?,
                    hold_p50_ms: r.try_get("hold_p50_ms")?,
                    hold_p99_ms: r.try_get("hold_p99_ms")?,
                    endpoint_spread: r.try_get("endpoint_spread")?,
                    returning_share: r.try_get("returning_share")?,
                    affinity_hit_rate: r.try_get("affinity_hit_rate")?,
                    miss_penalty_ms: r.try_get("miss_penalty_ms")?,
                });
            }
            Ok(out)
        })
    }
}
