//! The warm-up pass (leader only, after each cleanup pass): keep `pool_min_size` idle, initialized
//! upstream sessions ready in every enabled pool, so a new client pays no upstream handshake. Each
//! creation is a fenced `warm` reservation (never beyond `pool_max_size`, I1); the slot is then
//! created by [`SlotClient::create_slot`] — the same open-and-commit path a node takes for a slot
//! it needs at once — or the reservation is aborted when the upstream fails.

use poolgate_control::slots::{SlotClient, SlotError};
use poolgate_control::{ControlError, Reservation};
use poolgate_shared::domain::pool::Strategy;
use poolgate_shared::domain::server::{Server, ServerId};

use std::time::Duration;

use super::each_pool;
use super::leader::Leadership;

/// Most creations per pool per tick.
pub const CREATES_PER_TICK: u32 = 20;

#[derive(Clone)]
pub struct WarmUp {
    pub slots: SlotClient,
    pub leadership: Leadership,
    /// `POOL_ENABLED`: the global switch.
    pub enabled: bool,
    /// The most one pool's share of a tick may take ([`crate::pool_deadline`]).
    pub deadline: Duration,
}

impl WarmUp {
    /// One pass (pools concurrently, see [`each_pool`]); returns how many slots were created.
    /// Stops (and steps down) on a refused token.
    pub async fn tick(&self) -> u64 {
        let Some(term) = self.leadership.term() else { return 0 };
        if !self.enabled {
            return 0;
        }
        let Ok(pools) = self.slots.control().pools().await else {
            return 0;
        };
        each_pool("warm-up", pools, self.deadline, |pool| self.pool(pool, term))
            .await
            .into_iter()
            .sum()
    }

    /// One pool's share: creations one after another, stopping at the first failure (an upstream
    /// that is down costs one handshake timeout per tick, not one per missing session).
    async fn pool(&self, pool: ServerId, term: u64) -> u64 {
        if self.leadership.term() != Some(term) {
            return 0;
        }
        let Ok(Some(server)) = self.slots.pools().store.get_server(&pool).await else {
            return 0;
        };
        // Under `none` every request gets a fresh session: warm ones would never be used.
        if !server.pool.pool_enabled || server.pool.pool_min_size == 0 || server.pool.pool_strategy == Strategy::None {
            return 0;
        }
        let mut created = 0;
        for _ in 0..CREATES_PER_TICK.min(server.pool.pool_min_size) {
            let Some(resv) = self.reserve(&pool, term, &server).await else {
                break;
            };
            match self.slots.create_slot(&server, &resv, None).await {
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
