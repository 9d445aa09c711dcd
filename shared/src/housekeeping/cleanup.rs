//! The cleanup loop (`POOL_MANAGER_CLEANUP_INTERVAL`, leader only): per pool, reclaim expired
//! leases, idle bindings and reservations whose creator died (and the outbox of slots removed
//! elsewhere), recycle idle slots older than `pool_recycle_seconds` with a fenced script, and
//! close every removed slot's upstream session with DELETE. Work per tick is bounded.

use std::time::Duration;

use crate::control::{ControlError, Pools, SlotRecord};
use crate::domain::server::Server;
use crate::upstream::{SessionTarget, UpstreamClient};

use super::leader::Leadership;

/// Most pools visited per tick, and most items of each kind handled per pool.
pub const POOLS_PER_TICK: usize = 500;
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
    pub interval: Duration,
    /// Runs right after each cleanup pass (it refills what cleanup removed).
    pub warmup: Option<super::warmup::WarmUp>,
    /// Metrics snapshots and retention, after warm-up.
    pub snapshots: Option<super::snapshot::Snapshots>,
}

/// Ends the upstream sessions of removed slots (best effort: an upstream that is down ends them
/// by its own idle timeout).
pub async fn close_removed(upstream: &UpstreamClient, server: Option<&Server>, closed: &[SlotRecord]) -> u64 {
    let headers = server.map(|s| s.upstream_headers.pairs()).unwrap_or_default();
    let mut n = 0;
    for slot in closed {
        let target = SessionTarget::for_slot(slot, headers.clone());
        if target.session_id.is_some() && !target.url.is_empty() {
            match upstream.close(&target).await {
                Ok(()) => n += 1,
                Err(e) => tracing::debug!(url = %target.url, error = %e, "closing a removed upstream session failed"),
            }
        }
    }
    n
}

impl Cleanup {
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.interval) => {}
            }
            let report = self.tick().await;
            if report.pools > 0 {
                tracing::debug!(?report, "cleanup tick");
            }
            if let Some(w) = &self.warmup {
                let created = w.tick().await;
                if created > 0 {
                    tracing::debug!(created, "warm-up tick");
                }
            }
            if let Some(s) = &self.snapshots {
                let r = s.tick().await;
                if r.written + r.deleted > 0 {
                    tracing::debug!(?r, "snapshot tick");
                }
            }
        }
    }

    /// One pass over the pools, if this process leads.
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
        for pool in pools.into_iter().take(POOLS_PER_TICK) {
            if self.leadership.term() != Some(term) {
                break;
            }
            report.pools += 1;
            let server = self.pools.store.get_server(&pool).await.ok().flatten();
            let mut closed = Vec::new();
            match self.pools.control.reclaim(&pool, ITEMS_PER_POOL).await {
                Ok(r) => {
                    report.leases += u64::from(r.leases);
                    report.bindings += u64::from(r.bindings);
                    report.reservations += u64::from(r.reservations);
                    closed.extend(r.closed);
                }
                Err(e) => tracing::warn!(%pool, error = %e, "cleanup: reclaim failed"),
            }
            if let Some(server) = &server {
                let age = Duration::from_secs(server.pool.pool_recycle_seconds.into());
                match self.pools.control.recycle(&pool, term, age, ITEMS_PER_POOL).await {
                    Ok(recycled) => {
                        report.recycled += recycled.len() as u64;
                        closed.extend(recycled);
                    }
                    Err(ControlError::StaleFence { newest }) => {
                        tracing::warn!(%pool, term, newest, "a newer leader exists; stepping down");
                        self.leadership.step_down();
                        report.deposed = true;
                        report.closed += close_removed(&self.upstream, Some(server), &closed).await;
                        return report;
                    }
                    Err(e) => tracing::warn!(%pool, error = %e, "cleanup: recycle failed"),
                }
            }
            report.closed += close_removed(&self.upstream, server.as_ref(), &closed).await;
        }
        report
    }
}
