//! The embedded control plane: the single node's in-process twin of the Redis one.
//!
//! It mirrors `lua/*.lua` function by function over in-memory versions of the same thirteen
//! keys, so both backends make the same decisions and return the same errors; the conformance
//! suite runs unchanged against both. One mutex guards all pools — each operation is as atomic
//! as a Lua script, and none awaits while holding it. Its clock plays the role of Redis `TIME`.
//!
//! # Layout
//! - `mod.rs`: [`EmbeddedControlPlane`] (the lock, pool lookup, leader state) and the calls that
//!   are no script (ping, pool list, change notifications).
//! - `pool.rs`: one pool's state (the twin of its keys, typed counters) and the prelude helpers.
//! - `zset.rs`: the sorted set.
//! - The operations are in `control/ops/<op>.rs`, beside their Redis call.

pub(crate) mod pool;
pub(crate) mod zset;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use super::ControlError;
use pool::{now_ms, Pool};
use poolgate_shared::domain::server::ServerId;

/// Everything the embedded plane holds.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) pools: HashMap<ServerId, Pool>,
    /// The leader key: `"holder|term"` and its expiry (ms).
    pub(crate) leader: Option<(String, i64)>,
    /// The term counter (never reset).
    pub(crate) term: u64,
}

/// In-process twin of the Redis control plane.
#[derive(Debug, Default)]
pub struct EmbeddedControlPlane {
    state: Mutex<State>,
}

impl EmbeddedControlPlane {
    pub fn new() -> Self {
        EmbeddedControlPlane::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, ControlError> {
        self.state
            .lock()
            .map_err(|_| ControlError::Protocol("control state poisoned".into()))
    }

    /// Runs `f` on the pool's state (created on first use, unconfigured).
    pub(crate) fn with_pool<T>(&self, pool: &ServerId, f: impl FnOnce(&mut Pool) -> T) -> Result<T, ControlError> {
        let mut state = self.lock()?;
        Ok(f(state.pools.entry(pool.clone()).or_insert_with(Pool::new)))
    }

    /// The state with an expired leader key dropped (it expires on its own, as with Redis PX).
    pub(crate) fn leader_state(&self) -> Result<MutexGuard<'_, State>, ControlError> {
        let mut state = self.lock()?;
        if state.leader.as_ref().is_some_and(|(_, exp)| *exp <= now_ms()) {
            state.leader = None;
        }
        Ok(state)
    }

    /// `forget.lua`: drops the pool when nothing is left in it.
    pub(crate) fn forget_pool(&self, pool: &ServerId) -> Result<bool, ControlError> {
        let mut state = self.lock()?;
        let empty = state
            .pools
            .get(pool)
            .is_none_or(|p| p.all.len() + p.leases.len() + p.resv.len() + p.closing.len() == 0);
        if empty {
            state.pools.remove(pool);
        }
        Ok(empty)
    }

    pub async fn ping(&self) -> Result<(), ControlError> {
        Ok(())
    }

    pub async fn pools(&self) -> Result<Vec<ServerId>, ControlError> {
        let state = self.lock()?;
        let mut out: Vec<ServerId> = state
            .pools
            .iter()
            .filter(|(_, p)| p.cfg.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        out.sort();
        Ok(out)
    }

    pub async fn changes(&self, pool: &ServerId) -> Result<watch::Receiver<u64>, ControlError> {
        self.with_pool(pool, |p| p.notify.subscribe())
    }
}
