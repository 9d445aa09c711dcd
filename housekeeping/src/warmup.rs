//! The warm-up pass (leader only, every `POOL_MANAGER_WARMUP_INTERVAL`): keep `pool_min_size` idle, initialized
//! upstream sessions ready in every enabled pool, so a new client pays no upstream handshake. Each
//! creation is a fenced `warm` reservation (never beyond `pool_max_size`, I1); the slot is then
//! created by [`SlotClient::create_slot`] — the same open-and-commit path a node takes for a slot
//! it needs at once — or the reservation is aborted when the upstream fails.

use poolgate_control::slots::{SlotClient, SlotError};
use poolgate_control::{ControlError, Reservation};
use poolgate_shared::domain::pool::Strategy;
use poolgate_shared::domain::server::{Server, ServerId};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::leader::Leadership;
use super::POOLS_PER_TICK;

/// Most creations per pool per tick.
pub const CREATES_PER_TICK: u32 = 20;

#[derive(Clone)]
pub struct WarmUp {
    pub slots: SlotClient,
    pub leadership: Leadership,
    /// `POOL_ENABLED`: the global switch.
    pub enabled: bool,
    /// Pools whose warm-up is still running (a slow upstream's pool is skipped, not waited for).
    pub busy: Arc<Mutex<HashSet<ServerId>>>,
}

impl WarmUp {
    pub fn new(slots: SlotClient, leadership: Leadership, enabled: bool) -> WarmUp {
        WarmUp {
            slots,
            leadership,
            enabled,
            busy: Arc::default(),
        }
    }

    /// One pass: each pool below `pool_min_size` gets a warm-up task of its own, unless its
    /// previous one still runs — creations are never cut halfway (an upstream session opened but
    /// never committed would leak), and a pool whose upstream is slow or black-holed delays no
    /// other pool. Returns how many pools' warm-ups started.
    pub async fn tick(&self) -> u64 {
        let Some(term) = self.leadership.term() else { return 0 };
        if !self.enabled {
            return 0;
        }
        // One read of the servers per pass (it runs every second or so), not one per pool.
        let servers = match self.slots.pools().store.list_servers().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "warm-up: cannot read the servers");
                return 0;
            }
        };
        let mut started = 0;
        // Under `none` every request gets a fresh session: warm ones would never be used.
        let wanted = servers
            .into_iter()
            .filter(|s| s.pool.pool_enabled && s.pool.pool_min_size > 0 && s.pool.pool_strategy != Strategy::None)
            .take(POOLS_PER_TICK);
        for server in wanted {
            let fresh = self.busy.lock().is_ok_and(|mut b| b.insert(server.id.clone()));
            if !fresh {
                continue;
            }
            started += 1;
            let me = self.clone();
            tokio::spawn(async move {
                // Leaves the busy set however the task ends (a panic included).
                let _busy = Busy(me.busy.clone(), server.id.clone());
                let created = me.pool(&server, term).await;
                if created > 0 {
                    tracing::debug!(pool = %server.id, created, "warm-up");
                }
            });
        }
        started
    }

    /// One pool's share: creations one after another, stopping at the first failure (an upstream
    /// that is down costs one handshake timeout per tick, not one per missing session).
    async fn pool(&self, server: &Server, term: u64) -> u64 {
        if self.leadership.term() != Some(term) {
            return 0;
        }
        let pool = server.id.clone();
        let mut created = 0;
        for _ in 0..CREATES_PER_TICK.min(server.pool.pool_min_size) {
            let Some(resv) = self.reserve(&pool, term, server).await else {
                break;
            };
            match self.slots.create_slot(server, &resv, None).await {
                Ok(_) => created += 1,
                Err(SlotError::Upstream(e)) => {
                    tracing::info!(%pool, endpoint = resv.endpoint, error = %e, "warm-up: upstream session not created");
                    break;
                }
                Err(e) => {
                    tracing::warn!(%pool, error = %e, "warm-up: slot not created");
                    break;
                }
            }
        }
        created
    }

    /// A fenced reservation for one more warm slot; `None` when the pool has enough (or on a
    /// failure, logged; a refused token also steps down).
    async fn reserve(&self, pool: &ServerId, term: u64, server: &Server) -> Option<Reservation> {
        let id = uuid::Uuid::new_v4().to_string();
        let holder = self.leadership.holder();
        match self
            .slots
            .control()
            .warm(pool, term, server.pool.pool_min_size, &id, holder)
            .await
        {
            Ok(r) => r,
            Err(ControlError::StaleFence { .. }) => {
                self.leadership.step_down();
                None
            }
            Err(e) => {
                tracing::warn!(%pool, error = %e, "warm-up: reservation failed");
                None
            }
        }
    }
}

/// A pool's place in [`WarmUp::busy`] while its warm-up task runs.
struct Busy(Arc<Mutex<HashSet<ServerId>>>, ServerId);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut b) = self.0.lock() {
            b.remove(&self.1);
        }
    }
}
