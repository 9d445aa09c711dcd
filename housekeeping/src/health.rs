//! The health-check pass (every `POOL_MANAGER_HEALTH_CHECK_INTERVAL`, leader only): ping the idle
//! upstream sessions of every pool (`ping`, or `server/discover` for a sessionless upstream); a
//! session that fails is marked unhealthy, which removes it (it is idle) and closes it upstream,
//! and warm-up replaces it once the upstream answers again. Each pass records how many were pinged
//! and how many failed in the control plane, so every node's health score reflects it.

use poolgate_control::slots::{close_removed, target_of};
use poolgate_control::{Pools, SlotState};
use poolgate_upstream::UpstreamClient;

use super::leader::Leadership;
use super::POOLS_PER_TICK;

/// Most sessions pinged per pool per pass.
pub const PINGS_PER_POOL: usize = 50;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthReport {
    pub pinged: u64,
    pub failed: u64,
}

#[derive(Clone)]
pub struct HealthCheck {
    pub pools: Pools,
    pub upstream: UpstreamClient,
    pub leadership: Leadership,
}

impl HealthCheck {
    pub async fn tick(&self) -> HealthReport {
        let mut report = HealthReport::default();
        if self.leadership.term().is_none() {
            return report;
        }
        let Ok(pools) = self.pools.control.pools().await else {
            return report;
        };
        for pool in pools.into_iter().take(POOLS_PER_TICK) {
            let Ok(Some(server)) = self.pools.store.get_server(&pool).await else {
                continue;
            };
            let Ok(slots) = self.pools.control.slots(&pool).await else {
                continue;
            };
            let headers = server.upstream_headers.pairs();
            let (mut pinged, mut failed) = (0u32, 0u32);
            let idle = slots
                .iter()
                .filter(|s| s.state == SlotState::Ready && s.leases == 0 && s.bindings == 0);
            for slot in idle.take(PINGS_PER_POOL) {
                let url = slot.meta.endpoint.clone().unwrap_or_default();
                let ok = match &slot.meta.session_id {
                    Some(_) => self.upstream.ping(&target_of(slot, headers.clone())).await.is_ok(),
                    None => matches!(self.upstream.discover(&url, &headers).await, Ok(Some(_))),
                };
                pinged += 1;
                if !ok {
                    failed += 1;
                    if let Ok(changed) = self.pools.control.mark(&pool, &slot.id, SlotState::Unhealthy).await {
                        close_removed(&self.upstream, Some(&server), &changed.closed).await;
                    }
                }
            }
            if pinged > 0 {
                let _ = self.pools.control.note_health(&pool, pinged, failed).await;
            }
            report.pinged += u64::from(pinged);
            report.failed += u64::from(failed);
        }
        report
    }
}
