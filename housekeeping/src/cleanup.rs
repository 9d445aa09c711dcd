//! The cleanup pass (every `POOL_MANAGER_CLEANUP_INTERVAL`, leader only): per pool, reclaim expired
//! leases, idle bindings and reservations whose creator died (and the outbox of slots removed
//! elsewhere), recycle idle slots older than `pool_recycle_seconds` with a fenced script, and
//! close every removed slot's upstream session with DELETE (a few at a time). Work per tick is
//! bounded in items and, per pool, in time ([`crate::each_pool`]).

use std::time::Duration;

use poolgate_control::slots::close_removed;
use poolgate_control::{ControlError, Pools};
use poolgate_upstream::UpstreamClient;

use poolgate_shared::domain::server::ServerId;

use super::each_pool;
use super::leader::Leadership;

/// Most items of each kind (leases, bindings, reservations, recycled slots) handled per pool.
pub const ITEMS_PER_POOL: u32 = 1000;

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub pools: usize,
    pub leases: u64,
    pub bindings: u64,
    pub reservations: u64,
    pub recycled: u64,
    pub closed: u64,
    /// The tick stopped because a newer leader exists (fenced write refused).
    pub deposed: bool,
}

#[derive(Clone)]
pub struct Cleanup {
    pub pools: Pools,
    pub upstream: UpstreamClient,
    pub leadership: Leadership,
    /// The most one pool's share of a tick may take ([`crate::pool_deadline`]).
    pub deadline: Duration,
}

impl Cleanup {
    /// One pass over the pools, if this process leads (pools concurrently, see [`each_pool`]).
    pub async fn tick(&self) -> CleanupReport {
        let mut report = CleanupReport::default();
        let Some(term) = self.leadership.term() else {
            return report;
        };
        let pools = match self.pools.control.pools().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cleanup: cannot list pools");
                return report;
            }
        };
        for r in each_pool("cleanup", pools, self.deadline, |pool| self.pool(pool, term)).await {
            report.pools += r.pools;
            report.leases += r.leases;
            report.bindings += r.bindings;
            report.reservations += r.reservations;
            report.recycled += r.recycled;
            report.closed += r.closed;
            report.deposed |= r.deposed;
        }
        report
    }

    /// One pool's share of the pass.
    async fn pool(&self, pool: ServerId, term: u64) -> CleanupReport {
        let mut report = CleanupReport::default();
        if self.leadership.term() != Some(term) {
            return report;
        }
        report.pools = 1;
        let server = self.pools.store.get_server(&pool).await.ok().flatten();
        let mut closed = Vec::new();
        match self.pools.control.reclaim(&pool, ITEMS_PER_POOL).await {
            Ok(r) => {
                report.leases = u64::from(r.leases);
                report.bindings = u64::from(r.bindings);
                report.reservations = u64::from(r.reservations);
                closed.extend(r.closed);
            }
            Err(e) => tracing::warn!(%pool, error = %e, "cleanup: reclaim failed"),
        }
        if let Some(server) = &server {
            let age = Duration::from_secs(server.pool.pool_recycle_seconds.into());
            match self.pools.control.recycle(&pool, term, age, ITEMS_PER_POOL).await {
                Ok(recycled) => {
                    report.recycled = recycled.len() as u64;
                    closed.extend(recycled);
                }
                Err(ControlError::StaleFence { newest }) => {
                    tracing::warn!(%pool, term, newest, "a newer leader exists; stepping down");
                    self.leadership.step_down();
                    report.deposed = true;
                }
                Err(e) => tracing::warn!(%pool, error = %e, "cleanup: recycle failed"),
            }
        }
        report.closed = close_removed(&self.upstream, server.as_ref(), &closed).await;
        report
    }
}
