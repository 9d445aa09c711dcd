//! The warm-up pass (leader only, after each cleanup pass): keep `pool_min_size` idle, initialized
//! upstream sessions ready in every enabled pool, so a new client pays no upstream handshake. Each
//! creation is a fenced `warm` reservation (never beyond `pool_max_size`, I1); the slot is then
//! created by [`SlotClient::create_slot`] — the same open-and-commit path a node takes for a slot
//! it needs at once — or the reservation is aborted when the upstream fails.

use poolgate_control::slots::{SlotClient, SlotError};
use poolgate_control::{ControlError, Reservation};
use poolgate_shared::domain::pool::Strategy;
use poolgate_shared::domain::server::{Server, ServerId};

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
}

impl WarmUp {
    /// One pass; returns how many slots were created. Stops (and steps down) on a refused token.
    pub async fn tick(&self) -> u64 {
        let Some(term) = self.leadership.term() else { return 0 };
        if !self.enabled {
            return 0;
        }
        let Ok(pools) = self.slots.control().pools().await else {
            return 0;
        };
        let mut created = 0;
        for pool in pools.into_iter().take(POOLS_PER_TICK) {
            let Ok(Some(server)) = self.slots.pools().store.get_server(&pool).await else {
                continue;
            };
            // Under `none` every request gets a fresh session: warm ones would never be used.
            if !server.pool.pool_enabled
                || server.pool.pool_min_size == 0
                || server.pool.pool_strategy == Strategy::None
            {
                continue;
            }
            for _ in 0..CREATES_PER_TICK.min(server.pool.pool_min_size) {
                let Some(resv) = self.reserve(&pool, term, &server).await else {
                    if self.leadership.term() != Some(term) {
                        return created;
                    }
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
