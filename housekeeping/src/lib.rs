//! Fleet housekeeping (`poolgate-housekeeping`): leader election with fencing, the leader's
//! passes and the strategy optimizer. The coordinator
//! process runs them in distributed mode; the embedded node runs them itself. Both start them
//! the same way, with [`spawn`], and stop them through the same shutdown signal.
//!
//! # Layout
//! - `leader.rs`: [`Leadership`] (campaign, renew on a monotonic deadline, resign) and [`Timing`].
//! - `cleanup.rs`: [`Cleanup`], one pass of reclaim + fenced recycle + closing removed sessions.
//! - `warmup.rs`: [`WarmUp`], one pass of fenced `warm` reservations filled through the pool
//!   client ([`poolgate_control::slots::SlotClient::create_slot`]).
//! - `health.rs`: [`HealthCheck`], one pass of pings over idle sessions.
//! - `snapshot.rs`: [`Snapshots`], one pass of metrics snapshots, retention and auto-optimize.
//! - [`optimizer`]: the strategy optimizer (pure functions; a seeded pool simulation), applied
//!   by the snapshot pass for pools with `pool_auto_optimize` and read by the admin API.
//! - `reconcile.rs`: [`Reconcile`], one pass re-syncing every pool from the database (I14).
//! - `history.rs`: [`History`], the upstream sessions' history into `mcp_sessions`, with retention.
//! - `lib.rs`: the schedule ([`spawn`]): the leadership loop, the maintenance loop (cleanup →
//!   snapshots → session history every `POOL_MANAGER_CLEANUP_INTERVAL`), the health loop, the reconcile loop
//!   (`POOL_MANAGER_RECONCILE_INTERVAL`) and the warm-up loop (`POOL_MANAGER_WARMUP_INTERVAL`), and
//!   [`each_pool`], how every pass visits pools.
//!
//! # A bad upstream cannot stall the leader
//! Passes call upstreams the fleet does not control (DELETEs, pings, probes, handshakes). Each
//! pass visits [`POOLS_AT_ONCE`] pools concurrently, each pool's share of a pass ends at its
//! deadline (the pass interval, at most [`POOL_DEADLINE`]), and within a pool upstream calls run a
//! few at a time: one black-holed endpoint delays only its own pool, by at most the deadline.

pub mod cleanup;
pub mod health;
pub mod history;
pub mod leader;
pub mod optimizer;
pub mod reconcile;
pub mod snapshot;
pub mod warmup;

use std::time::Duration;

use tokio::sync::watch;

pub use cleanup::{Cleanup, CleanupReport};
pub use health::{HealthCheck, HealthReport};
pub use history::{History, HistoryReport};
pub use leader::{Leadership, Role, Timing};
pub use reconcile::{Reconcile, ReconcileReport};
pub use snapshot::{SnapshotReport, Snapshots};
pub use warmup::WarmUp;

use poolgate_control::slots::SlotClient;
use poolgate_shared::config::Config;
use poolgate_shared::domain::server::ServerId;

/// Most pools each pass visits per tick.
pub const POOLS_PER_TICK: usize = 500;
/// Pools a pass works on at once.
pub const POOLS_AT_ONCE: usize = 8;
/// Upstream calls (pings, probes) one pool's pass makes at once.
pub const UPSTREAM_CALLS_AT_ONCE: usize = 8;
/// The most one pool's share of a pass may take.
pub const POOL_DEADLINE: Duration = Duration::from_secs(30);

/// Runs `work` for each pool (the first [`POOLS_PER_TICK`]), [`POOLS_AT_ONCE`] at a time, each
/// cut at `deadline`; returns the results of the pools that finished in time (one that did not
/// is logged and left for the next pass).
pub async fn each_pool<T, F, Fut>(pass: &'static str, pools: Vec<ServerId>, deadline: Duration, work: F) -> Vec<T>
where
    F: Fn(ServerId) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures_util::StreamExt as _;
    futures_util::stream::iter(pools.into_iter().take(POOLS_PER_TICK))
        .map(|pool| {
            let job = work(pool.clone());
            async move {
                match tokio::time::timeout(deadline, job).await {
                    Ok(t) => Some(t),
                    Err(_) => {
                        tracing::warn!(%pool, pass, ?deadline, "pool's share of the pass cut at its deadline (slow or unreachable upstream)");
                        None
                    }
                }
            }
        })
        .buffer_unordered(POOLS_AT_ONCE)
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// One pool's deadline within a pass that runs every `interval`.
pub fn pool_deadline(interval: Duration) -> Duration {
    interval.min(POOL_DEADLINE)
}

/// Leadership timing from the configuration.
pub fn timing(config: &Config) -> Timing {
    let r = &config.pooling.redis;
    Timing {
        ttl: r.leader_ttl,
        heartbeat: r.leader_heartbeat_interval,
        renew_deadline: r.leader_renew_deadline,
    }
}

/// When the passes run, and which.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// `POOL_MANAGER_CLEANUP_INTERVAL`: cleanup, then warm-up, then snapshots (the window of
    /// each metrics row).
    pub maintenance: Duration,
    /// `POOL_MANAGER_HEALTH_CHECK_INTERVAL`.
    pub health: Duration,
    /// `POOL_MANAGER_RECONCILE_INTERVAL`.
    pub reconcile: Duration,
    /// `POOL_MANAGER_WARMUP_INTERVAL`.
    pub warmup: Duration,
    /// `POOL_MANAGER_METRICS_RETENTION_DAYS`.
    pub retention_days: u64,
    /// `POOL_ENABLED`: warm-up creates nothing when pooling is off globally.
    pub pooling_enabled: bool,
}

impl Schedule {
    pub fn from_config(config: &Config) -> Schedule {
        let m = &config.pooling.manager;
        Schedule {
            maintenance: m.cleanup_interval,
            health: m.health_check_interval,
            reconcile: m.reconcile_interval,
            warmup: m.warmup_interval,
            retention_days: m.metrics_retention_days,
            pooling_enabled: config.pooling.enabled,
        }
    }
}

/// The running loops; [`Running::join`] waits for them after the shutdown signal.
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits until every loop stopped (the leadership loop resigns on its way out).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the leadership loop and the leader's passes. They stop when `shutdown` turns true:
/// a pass under way finishes first, and a leader resigns so another process can lead at once.
pub fn spawn(
    slots: SlotClient,
    leadership: Leadership,
    schedule: Schedule,
    shutdown: watch::Receiver<bool>,
) -> Running {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let cleanup = Cleanup {
        pools: slots.pools().clone(),
        upstream: slots.upstream().clone(),
        leadership: leadership.clone(),
        deadline: pool_deadline(schedule.maintenance),
    };
    let warmup = WarmUp::new(slots.clone(), leadership.clone(), schedule.pooling_enabled);
    let reconcile = Reconcile {
        slots: slots.clone(),
        leadership: leadership.clone(),
        deadline: pool_deadline(schedule.reconcile),
    };
    let snapshots = Snapshots::new(
        slots.pools().clone(),
        leadership.clone(),
        schedule.maintenance,
        schedule.retention_days,
    );
    let history = History {
        pools: slots.pools().clone(),
        leadership: leadership.clone(),
        retention_days: schedule.retention_days,
        deadline: pool_deadline(schedule.maintenance),
    };
    let health = HealthCheck {
        slots: slots.clone(),
        leadership: leadership.clone(),
        deadline: pool_deadline(schedule.health),
    };
    let maintenance = every(schedule.maintenance, stopped(shutdown.clone()), move || {
        let (cleanup, snapshots, history) = (cleanup.clone(), snapshots.clone(), history.clone());
        async move {
            let report = cleanup.tick().await;
            if report.pools > 0 {
                tracing::debug!(?report, "cleanup pass");
            }
            let r = snapshots.tick().await;
            if r.written + r.deleted > 0 {
                tracing::debug!(?r, "snapshot pass");
            }
            let r = history.tick().await;
            if r.closed + r.deleted > 0 {
                tracing::debug!(?r, "session history pass");
            }
        }
    });
    let checks = every(schedule.health, stopped(shutdown.clone()), move || {
        let health = health.clone();
        async move {
            let report = health.tick().await;
            if report.failed > 0 {
                tracing::warn!(?report, "health check found failing upstream sessions");
            }
        }
    });
    // Reconcile first, then warm-up, each on its own short interval: a change made anywhere
    // (API, SQL, a write made while Redis was away) is in force within one reconcile interval,
    // and `pool_min_size` sessions follow within about a warm-up interval.
    let converge = every(schedule.reconcile, stopped(shutdown.clone()), move || {
        let reconcile = reconcile.clone();
        async move {
            let report = reconcile.tick().await;
            if report.synced + report.forgotten > 0 {
                tracing::info!(?report, "reconcile pass");
            }
        }
    });
    let warming = every(schedule.warmup, stopped(shutdown.clone()), move || {
        let warmup = warmup.clone();
        async move {
            warmup.tick().await;
        }
    });
    Running {
        tasks: vec![
            tokio::spawn(leadership.run(stopped(shutdown))),
            tokio::spawn(maintenance),
            tokio::spawn(checks),
            tokio::spawn(converge),
            tokio::spawn(warming),
        ],
    }
}

/// Runs `pass` every `interval` until `shutdown` completes (a pass under way finishes).
async fn every<F, P>(interval: Duration, shutdown: impl std::future::Future<Output = ()>, mut pass: P)
where
    P: FnMut() -> F,
    F: std::future::Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(interval) => {}
        }
        pass().await;
    }
}
