//! The health-check pass (every `POOL_MANAGER_HEALTH_CHECK_INTERVAL`, leader only): ping the idle
//! upstream sessions of every pool (`ping`, or `server/discover` for a sessionless upstream), and
//! probe every endpoint that has no idle session to ping or whose circuit breaker is not closed —
//! so an upstream that is down shows in the pool's health even when the pool holds no session,
//! and an open breaker closes once its endpoint answers again. A session that fails is marked
//! unhealthy — fenced by the leader's token, and only if it is still idle — which removes it and
//! closes it upstream; warm-up replaces it once the
//! upstream answers again. Each pass records how many were checked and how many failed in the
//! control plane, so every node's health score reflects it. Calls run a few at a time, and each
//! pool's share is cut at its deadline ([`crate::each_pool`]).

use std::time::Duration;

use futures_util::StreamExt as _;

use poolgate_control::slots::{close_removed, target_of, SlotClient};
use poolgate_control::{BreakerState, EndpointOutcome, SlotRecord, SlotState};
use poolgate_shared::domain::server::{Server, ServerId};
use poolgate_upstream::UpstreamError;

use super::leader::Leadership;
use super::{each_pool, UPSTREAM_CALLS_AT_ONCE};

/// Most sessions pinged per pool per pass.
pub const PINGS_PER_POOL: usize = 50;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// Sessions pinged and endpoints probed.
    pub pinged: u64,
    pub failed: u64,
}

#[derive(Clone)]
pub struct HealthCheck {
    pub slots: SlotClient,
    pub leadership: Leadership,
    /// The most one pool's share of a pass may take ([`crate::pool_deadline`]).
    pub deadline: Duration,
}

/// One check of the pass: an idle session, or an endpoint (by index).
enum Check {
    Session(Box<SlotRecord>),
    Endpoint(u32),
}

impl HealthCheck {
    pub async fn tick(&self) -> HealthReport {
        let mut report = HealthReport::default();
        let Some(term) = self.leadership.term() else {
            return report;
        };
        let Ok(pools) = self.slots.control().pools().await else {
            return report;
        };
        for r in each_pool("health check", pools, self.deadline, |pool| self.pool(pool, term)).await {
            report.pinged += r.pinged;
            report.failed += r.failed;
        }
        report
    }

    async fn pool(&self, pool: ServerId, term: u64) -> HealthReport {
        // The term is checked per pool: a leader deposed during the pass stops at once.
        if self.leadership.term() != Some(term) {
            return HealthReport::default();
        }
        let control = self.slots.control();
        let Ok(Some(server)) = self.slots.pools().store.get_server(&pool).await else {
            return HealthReport::default();
        };
        let (Ok(slots), Ok(stats)) = (control.slots(&pool).await, control.stats(&pool).await) else {
            return HealthReport::default();
        };
        let idle: Vec<&SlotRecord> = slots
            .iter()
            .filter(|s| s.state == SlotState::Ready && s.leases == 0 && s.bindings == 0)
            .take(PINGS_PER_POOL)
            .collect();
        let probed = (0..server.endpoints.len() as u32).filter(|i| {
            let pinged_there = idle.iter().any(|s| s.endpoint == *i);
            !pinged_there || stats.breaker_state(*i) != BreakerState::Closed
        });
        let checks: Vec<Check> = idle
            .iter()
            .map(|s| Check::Session(Box::new((*s).clone())))
            .chain(probed.map(Check::Endpoint))
            .collect();
        let results: Vec<bool> = futures_util::stream::iter(checks)
            .map(|check| self.check(&server, check, term))
            .buffer_unordered(UPSTREAM_CALLS_AT_ONCE)
            .collect()
            .await;
        let pinged = results.len() as u32;
        let failed = results.iter().filter(|ok| !**ok).count() as u32;
        if pinged > 0 {
            let _ = control.note_health(&pool, pinged, failed).await;
        }
        HealthReport {
            pinged: pinged.into(),
            failed: failed.into(),
        }
    }

    /// Runs one check; whether it passed.
    async fn check(&self, server: &Server, check: Check, term: u64) -> bool {
        let upstream = self.slots.upstream();
        let headers = server.upstream_headers.pairs();
        match check {
            Check::Session(slot) => {
                let url = slot.meta.endpoint.clone().unwrap_or_default();
                let failure = match &slot.meta.session_id {
                    Some(_) => upstream.ping(&target_of(&slot, headers.clone())).await.err(),
                    None => match upstream.discover(&url, &headers).await {
                        Ok(Some(_)) => None,
                        Ok(None) => Some(UpstreamError::Protocol(
                            "the endpoint no longer answers server/discover".into(),
                        )),
                        Err(e) => Some(e),
                    },
                };
                let Some(e) = failure else { return true };
                // Fenced, and only if the slot is still as idle as it was when listed: a slot a
                // client bound or leased meanwhile is not killed for a ping that raced it.
                match self
                    .slots
                    .control()
                    .mark_idle_fenced(&server.id, &slot.id, SlotState::Unhealthy, term)
                    .await
                {
                    Ok(changed) => {
                        close_removed(upstream, Some(server), &changed.closed).await;
                    }
                    Err(poolgate_control::ControlError::StaleFence { newest }) => {
                        tracing::warn!(pool = %server.id, term, newest, "a newer leader exists; stepping down");
                        self.leadership.step_down();
                    }
                    Err(e) => tracing::debug!(pool = %server.id, error = %e, "marking a failed session failed"),
                }
                if e.counts_against_endpoint() {
                    self.slots
                        .note_endpoint(&server.id, slot.endpoint, EndpointOutcome::Failed)
                        .await;
                }
                false
            }
            Check::Endpoint(i) => {
                let Some(endpoint) = server.endpoints.get(i as usize) else {
                    return true;
                };
                let ok = upstream.probe(&endpoint.url, &headers).await.is_ok();
                let outcome = if ok {
                    EndpointOutcome::Ok
                } else {
                    EndpointOutcome::Failed
                };
                self.slots.note_endpoint(&server.id, i, outcome).await;
                ok
            }
        }
    }
}
