//! [`LeaseGuard`]: a lease that releases itself exactly once.
//!
//! Whoever holds a lease decides how it ends — used fine, failed, or with its upstream session
//! dead (retire) — and the guard sends that one release. Ending it explicitly
//! ([`release`](LeaseGuard::release), [`retire`](LeaseGuard::retire),
//! [`retire_unhealthy`](LeaseGuard::retire_unhealthy)) awaits the control plane's answer, so
//! what follows (a replay picking a slot) sees the pool as the release left it; dropping the
//! guard (an answer streamed to its end, a client gone mid-stream) releases in the background.
//! Either way one release goes out, carrying every flag set before it.

use std::time::{Duration, Instant};

use crate::{Affinity, EndpointOutcome, Lease, Outcome, SlotRecord, SlotState};
use std::sync::Arc;

use poolgate_shared::domain::server::Server;
use poolgate_upstream::SessionTarget;

use super::SlotClient;

/// A held lease. See the module doc.
pub struct LeaseGuard {
    client: SlotClient,
    /// Shared with the caller: a lease per request costs no copy of the server definition.
    server: Arc<Server>,
    lease: Lease,
    /// Set when the caller measures the request (its latency feeds the pool's histograms).
    started: Option<Instant>,
    outcome: Outcome,
    released: bool,
    /// Only streamed answers renew their lease; a JSON answer ends before the TTL matters.
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    pub(super) fn new(client: SlotClient, server: &Arc<Server>, lease: Lease) -> LeaseGuard {
        LeaseGuard {
            client,
            server: Arc::clone(server),
            lease,
            started: None,
            outcome: Outcome::default(),
            released: false,
            renewer: None,
        }
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn slot(&self) -> &SlotRecord {
        &self.lease.slot
    }

    /// Where requests on this lease go: the slot's upstream session with the server's headers.
    pub fn target(&self) -> SessionTarget {
        super::target_of(&self.lease.slot, self.server.upstream_headers.pairs())
    }

    /// Reports the time from now to the release as the request's latency.
    pub fn measure(&mut self) {
        self.started = Some(Instant::now());
    }

    /// Whether the user came back to its previous slot (shared isolation), reported on release.
    pub fn set_affinity(&mut self, affinity: Affinity) {
        self.outcome.affinity = affinity;
    }

    /// Counts the request as failed (the slot stays in the pool).
    pub fn set_error(&mut self, error: bool) {
        self.outcome.error = error;
    }

    /// Renews the lease every half TTL until the guard ends (a streamed answer may outlive it).
    pub fn renew_while_streaming(&mut self) {
        let every =
            Duration::from_millis(u64::from(self.server.pool.pool_lease_ttl) * 500).max(Duration::from_millis(500));
        let control = self.client.control().clone();
        let (pool, id) = (self.server.id.clone(), self.lease.id.clone());
        self.renewer = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if !matches!(control.renew(&pool, &id).await, Ok(Some(_))) {
                    break;
                }
            }
        }));
    }

    /// Releases now and waits for the control plane.
    pub async fn release(mut self) {
        let outcome = self.take_outcome();
        self.client.release(&self.server, &self.lease.id, outcome).await;
    }

    /// Releases now with the slot retired (its upstream session is dead or must not be reused):
    /// the slot leaves the pool in the same release, before anyone can pick it again.
    pub async fn retire(mut self) {
        self.outcome.error = true;
        self.outcome.retire = true;
        self.release().await;
    }

    /// Marks the slot unhealthy (no acquire picks it from now on; it closes once idle), then
    /// releases as failed — for an upstream that failed in transport.
    pub async fn retire_unhealthy(mut self) {
        self.outcome.error = true;
        self.client
            .mark(&self.server, &self.lease.slot.id, SlotState::Unhealthy)
            .await;
        self.client
            .note_endpoint(&self.server.id, self.lease.slot.endpoint, EndpointOutcome::Failed)
            .await;
        self.release().await;
    }

    /// The answer failed midway (an upstream answer over a limit, a broken stream): when the
    /// guard is dropped, the release retires the slot, so the session is not reused.
    pub fn retire_on_drop(&mut self) {
        self.outcome.error = true;
        self.outcome.retire = true;
    }

    fn take_outcome(&mut self) -> Outcome {
        self.released = true;
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let mut outcome = self.outcome;
        outcome.latency_ms = self.started.map(|t| t.elapsed().as_millis() as u64);
        outcome
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let outcome = self.take_outcome();
        let (client, server, lease) = (self.client.clone(), Arc::clone(&self.server), self.lease.id.clone());
        let releasing = client.releases().enter();
        tokio::spawn(async move {
            let _releasing = releasing;
            client.release(&server, &lease, outcome).await;
        });
    }
}
