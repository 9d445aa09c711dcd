//! Metrics snapshots (leader only): per pool and strategy, the deltas of the control plane's
//! fleet-wide counters since the previous pass go into `pool_strategy_metrics` (the optimizer's
//! input); retention deletes rows older than `POOL_MANAGER_METRICS_RETENTION_DAYS`. The first pass
//! after a (re)start only records the baseline. Wait-time percentiles and utilization skew are
//! left empty until nodes report them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::control::{PoolStats, Pools};
use crate::domain::server::ServerId;
use crate::store::StrategySnapshot;

use super::leader::Leadership;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    pub written: u64,
    pub deleted: u64,
}

#[derive(Clone)]
pub struct Snapshots {
    pub pools: Pools,
    pub leadership: Leadership,
    /// The interval between passes (recorded as each row's window).
    pub window: Duration,
    pub retention_days: u64,
    pub last: Arc<Mutex<HashMap<ServerId, PoolStats>>>,
}

impl Snapshots {
    pub fn new(pools: Pools, leadership: Leadership, window: Duration, retention_days: u64) -> Snapshots {
        Snapshots {
            pools,
            leadership,
            window,
            retention_days,
            last: Arc::default(),
        }
    }

    pub async fn tick(&self) -> SnapshotReport {
        let mut report = SnapshotReport::default();
        if self.leadership.term().is_none() {
            return report;
        }
        let Ok(pools) = self.pools.control.pools().await else {
            return report;
        };
        for pool in pools.into_iter().take(super::cleanup::POOLS_PER_TICK) {
            let Ok(stats) = self.pools.control.stats(&pool).await else {
                continue;
            };
            let prev = self
                .last
                .lock()
                .ok()
                .and_then(|mut m| m.insert(pool.clone(), stats.clone()));
            let (Some(prev), Ok(Some(server))) = (prev, self.pools.store.get_server(&pool).await) else {
                continue;
            };
            let d = |now: u64, before: u64| now.saturating_sub(before) as i64;
            let creates = d(stats.creates, prev.creates);
            let releases = d(stats.releases, prev.releases);
            let row = StrategySnapshot {
                pool_id: self.pools.store.pool_row(&pool).await.ok().flatten().map(|(id, _)| id),
                server_id: pool.to_string(),
                strategy: server.pool.pool_strategy.to_string(),
                recorded_at: crate::domain::now(),
                window_seconds: i32::try_from(self.window.as_secs()).unwrap_or(i32::MAX),
                acquisitions: d(stats.acquisitions, prev.acquisitions),
                timeouts: d(stats.timeouts, prev.timeouts),
                errors: d(stats.errors, prev.errors),
                rebinds: d(stats.rebinds, prev.rebinds),
                wait_p50_ms: None,
                wait_p95_ms: None,
                wait_p99_ms: None,
                utilization: (stats.slots > 0).then(|| stats.busy as f64 / stats.slots as f64),
                utilization_skew: None,
                reuse_rate: (releases > 0).then(|| releases as f64 / (creates.max(1)) as f64),
            };
            match self.pools.store.insert_snapshot(&row).await {
                Ok(()) => report.written += 1,
                Err(e) => tracing::warn!(%pool, error = %e, "snapshot not written"),
            }
        }
        let days = i64::try_from(self.retention_days).unwrap_or(i64::MAX / 86_400_000);
        let cutoff = crate::domain::now() - chrono::Duration::days(days);
        match self.pools.store.delete_snapshots_before(cutoff).await {
            Ok(n) => report.deleted = n,
            Err(e) => tracing::warn!(error = %e, "retention failed"),
        }
        report
    }
}
