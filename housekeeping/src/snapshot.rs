//! Metrics snapshots (leader only): per pool and strategy, the deltas of the control plane's
//! fleet-wide counters since the previous pass go into `pool_strategy_metrics` (the optimizer's
//! input); retention deletes rows older than `POOL_MANAGER_METRICS_RETENTION_DAYS`. The first pass
//! after a (re)start only records the baseline. Every figure is a difference of fleet-wide
//! counters (histogram buckets included), so rows cover exactly their window whatever node did
//! the work; utilization skew compares the slots' lease counts over the window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poolgate_control::{PoolStats, Pools};
use poolgate_shared::domain::server::ServerId;
use poolgate_store::StrategySnapshot;

use super::leader::Leadership;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    pub written: u64,
    pub deleted: u64,
    /// Pools whose strategy the optimizer changed.
    pub optimized: u64,
}

#[derive(Clone)]
pub struct Snapshots {
    pub pools: Pools,
    pub leadership: Leadership,
    /// The interval between passes (recorded as each row's window).
    pub window: Duration,
    pub retention_days: u64,
    pub last: Arc<Mutex<HashMap<ServerId, Baseline>>>,
}

/// What the previous pass saw of a pool.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    stats: PoolStats,
    /// Leases granted so far, per slot id.
    slot_uses: HashMap<String, u64>,
}

/// Endpoints with fewer requests in a window do not count towards the spread.
const MIN_ENDPOINT_REQUESTS: u64 = 20;

/// The row's figures from two consecutive passes (pure, for tests).
pub fn figures(now: &Baseline, before: &Baseline) -> StrategySnapshot {
    let (stats, prev) = (&now.stats, &before.stats);
    let d = |a: u64, b: u64| a.saturating_sub(b) as i64;
    let creates = d(stats.creates, prev.creates);
    let releases = d(stats.releases, prev.releases);
    let wait = stats.wait.since(&prev.wait);
    let hold = stats.hold.since(&prev.hold);
    let means: Vec<f64> = stats
        .endpoint_hold
        .iter()
        .filter_map(|(ep, (n, ms))| {
            let (n0, ms0) = prev.endpoint_hold.get(ep).copied().unwrap_or_default();
            let (n, ms) = (n.saturating_sub(n0), ms.saturating_sub(ms0));
            (n >= MIN_ENDPOINT_REQUESTS).then(|| ms as f64 / n as f64)
        })
        .collect();
    let spread = (means.len() >= 2).then(|| {
        let (lo, hi) = means
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
        hi / lo.max(0.5)
    });
    let (a, b) = (&stats.affinity, &prev.affinity);
    let hits = a.hits.saturating_sub(b.hits);
    let misses = a.misses.saturating_sub(b.misses);
    let new = a.new.saturating_sub(b.new);
    let returning = hits + misses;
    let penalty = (hits > 0 && misses > 0).then(|| {
        let hit_mean = a.hit_ms.saturating_sub(b.hit_ms) as f64 / hits as f64;
        let miss_mean = a.miss_ms.saturating_sub(b.miss_ms) as f64 / misses as f64;
        (miss_mean - hit_mean).max(0.0)
    });
    let uses: Vec<f64> = now
        .slot_uses
        .iter()
        .map(|(id, n)| n.saturating_sub(before.slot_uses.get(id).copied().unwrap_or(0)) as f64)
        .collect();
    StrategySnapshot {
        acquisitions: d(stats.acquisitions, prev.acquisitions),
        timeouts: d(stats.timeouts, prev.timeouts),
        errors: d(stats.errors, prev.errors),
        rebinds: d(stats.rebinds, prev.rebinds),
        wait_p50_ms: wait.quantile_ms(0.5),
        wait_p95_ms: wait.quantile_ms(0.95),
        wait_p99_ms: wait.quantile_ms(0.99),
        utilization: (stats.slots > 0).then(|| stats.busy as f64 / stats.slots as f64),
        utilization_skew: (uses.iter().sum::<f64>() > 0.0)
            .then(|| crate::optimizer::sim::coefficient_of_variation(&uses)),
        reuse_rate: (releases > 0).then(|| releases as f64 / (creates.max(1)) as f64),
        hold_p50_ms: hold.quantile_ms(0.5),
        hold_p99_ms: hold.quantile_ms(0.99),
        endpoint_spread: spread,
        returning_share: (returning + new > 0).then(|| returning as f64 / (returning + new) as f64),
        affinity_hit_rate: (returning > 0).then(|| hits as f64 / returning as f64),
        miss_penalty_ms: penalty,
        ..StrategySnapshot::default()
    }
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

    /// Applies the optimizer's recommendation when its hysteresis allows (the pool asked for it
    /// with `pool_auto_optimize`); the change is audited as actor `optimizer`. True if changed.
    async fn auto_optimize(&self, server: &poolgate_shared::domain::server::Server) -> bool {
        use crate::optimizer;
        let Ok(history) = self
            .pools
            .store
            .list_snapshots(server.id.as_str(), optimizer::HISTORY_ROWS)
            .await
        else {
            return false;
        };
        let (id, current, shape) = (
            server.id.to_string(),
            server.pool.pool_strategy,
            optimizer::shape_for(server),
        );
        let now = poolgate_shared::domain::now();
        let rec = tokio::task::spawn_blocking(move || {
            optimizer::recommend(&id, &history, current, &shape, now, &optimizer::Settings::default())
        })
        .await;
        let Ok(rec) = rec else {
            return false;
        };
        if !rec.apply {
            return false;
        }
        let changed = self
            .pools
            .store
            .update_server(&server.id, "optimizer", "pool.optimize", |s| {
                if s.pool.pool_strategy != rec.current || !s.pool.pool_auto_optimize {
                    return Err("configuration changed meanwhile");
                }
                let mut next = s.clone();
                next.pool.pool_strategy = rec.recommended;
                next.pool_defaults.remove("pool_strategy");
                next.updated_at = now;
                Ok(next)
            })
            .await;
        match changed {
            Ok(after) => {
                tracing::info!(server_id = %server.id, from = %rec.current, to = %rec.recommended,
                    improvement = rec.improvement, reasons = ?rec.reasons, "optimizer changed the pool strategy");
                let spec = poolgate_control::PoolSpec::for_server(&after);
                if let Err(e) = self.pools.control.sync(&after.id, &spec).await {
                    tracing::warn!(server_id = %after.id, error = %e, "new strategy not pushed to the control plane yet");
                }
                true
            }
            Err(e) => {
                tracing::info!(server_id = %server.id, error = ?e, "optimizer change skipped");
                false
            }
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
        for pool in pools.into_iter().take(super::POOLS_PER_TICK) {
            let (Ok(stats), Ok(slots)) = (
                self.pools.control.stats(&pool).await,
                self.pools.control.slots(&pool).await,
            ) else {
                continue;
            };
            let now = Baseline {
                stats,
                slot_uses: slots.into_iter().map(|s| (s.id, s.reuse_count)).collect(),
            };
            let prev = self
                .last
                .lock()
                .ok()
                .and_then(|mut m| m.insert(pool.clone(), now.clone()));
            let (Some(prev), Ok(Some(server))) = (prev, self.pools.store.get_server(&pool).await) else {
                continue;
            };
            let row = StrategySnapshot {
                pool_id: self.pools.store.pool_row(&pool).await.ok().flatten().map(|(id, _)| id),
                server_id: pool.to_string(),
                strategy: server.pool.pool_strategy.to_string(),
                recorded_at: poolgate_shared::domain::now(),
                window_seconds: i32::try_from(self.window.as_secs()).unwrap_or(i32::MAX),
                ..figures(&now, &prev)
            };
            match self.pools.store.insert_snapshot(&row).await {
                Ok(()) => report.written += 1,
                Err(e) => tracing::warn!(%pool, error = %e, "snapshot not written"),
            }
            if server.pool.pool_auto_optimize && self.auto_optimize(&server).await {
                report.optimized += 1;
            }
        }
        let days = i64::try_from(self.retention_days).unwrap_or(i64::MAX / 86_400_000);
        let cutoff = poolgate_shared::domain::now() - chrono::Duration::days(days);
        match self.pools.store.delete_snapshots_before(cutoff).await {
            Ok(n) => report.deleted = n,
            Err(e) => tracing::warn!(error = %e, "retention failed"),
        }
        report
    }
}
