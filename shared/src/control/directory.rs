//! Pools as the data plane and the coordinator use them: the control plane, backed by the store.
//!
//! The control plane holds each pool's configuration as synced from the database. When it has
//! none — the pool was never synced, or Redis restarted empty — [`Pools`] loads the server from
//! the store, syncs it and retries once, so pools rebuild themselves on next use (SPEC §8).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{AcquireRequest, Acquired, Attempt, ControlError, ControlPlane, PoolSpec};
use crate::domain::server::ServerId;
use crate::store::Store;

/// The control plane plus the store it is rebuilt from.
#[derive(Clone, Debug)]
pub struct Pools {
    pub control: ControlPlane,
    pub store: Store,
    /// This node's acquisitions waiting for a free session, per pool (see [`Pools::acquire_bounded`]).
    waiting: Arc<Mutex<HashMap<ServerId, usize>>>,
}

/// Counts one waiter while it lives.
struct Waiting {
    map: Arc<Mutex<HashMap<ServerId, usize>>>,
    pool: ServerId,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(n) = m.get_mut(&self.pool) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.pool);
                }
            }
        }
    }
}

impl Pools {
    pub fn new(control: ControlPlane, store: Store) -> Self {
        Pools {
            control,
            store,
            waiting: Arc::default(),
        }
    }

    /// This node's waiting acquisitions per pool (for `/metrics`).
    pub fn waiting(&self) -> Vec<(ServerId, usize)> {
        let mut v: Vec<(ServerId, usize)> = self
            .waiting
            .lock()
            .map(|m| m.iter().map(|(k, n)| (k.clone(), *n)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Like [`Pools::acquire`], but when nothing is free at once and `max_waiters` of this node's
    /// acquisitions already wait for this pool, fails at once with [`ControlError::Exhausted`]
    /// (counted as a timeout) instead of queueing. Under overload a deep queue only makes every
    /// admitted request wait for up to `pool_timeout`; a queue about one round of the pool's
    /// capacity deep keeps admitted requests near their unloaded latency and refuses the excess
    /// quickly (503 with Retry-After), which clients and balancers can act on.
    pub async fn acquire_bounded(
        &self,
        pool: &ServerId,
        req: &AcquireRequest,
        timeout: Duration,
        max_waiters: usize,
    ) -> Result<Acquired, ControlError> {
        let first = match self.control.try_acquire(pool, req).await {
            Err(ControlError::NotConfigured) => {
                tracing::info!(%pool, "pool missing from the control plane; rebuilding it from the store");
                self.sync_from_store(pool).await?;
                self.control.try_acquire(pool, req).await?
            }
            other => other?,
        };
        match first {
            Attempt::Leased(lease) => return Ok(Acquired::Leased(lease)),
            Attempt::Create(resv) => return Ok(Acquired::Create(resv)),
            Attempt::Wait { .. } => {}
        }
        let waiting = match self.waiting.lock() {
            Ok(mut m) => {
                let n = m.entry(pool.clone()).or_default();
                (*n < max_waiters).then(|| {
                    *n += 1;
                    Waiting {
                        map: self.waiting.clone(),
                        pool: pool.clone(),
                    }
                })
            }
            Err(_) => return Err(ControlError::Protocol("waiter map poisoned".into())),
        };
        let Some(_waiting) = waiting else {
            // Best effort: the timeout counter is a statistic, not state.
            let _ = self.control.note_timeout(pool).await;
            return Err(ControlError::Exhausted(Duration::ZERO));
        };
        self.control.acquire(pool, req, timeout).await
    }

    /// Pushes the server's current configuration from the store into the control plane.
    pub async fn sync_from_store(&self, pool: &ServerId) -> Result<PoolSpec, ControlError> {
        let server = self
            .store
            .get_server(pool)
            .await
            .map_err(|e| ControlError::Unavailable(format!("database: {e}")))?
            .ok_or_else(|| ControlError::UnknownPool(pool.to_string()))?;
        let spec = PoolSpec::for_server(&server);
        self.control.sync(pool, &spec).await?;
        Ok(spec)
    }

    /// [`ControlPlane::acquire`], rebuilding the pool from the store if the control plane lost it.
    pub async fn acquire(
        &self,
        pool: &ServerId,
        req: &AcquireRequest,
        timeout: Duration,
    ) -> Result<Acquired, ControlError> {
        match self.control.acquire(pool, req, timeout).await {
            Err(ControlError::NotConfigured) => {
                tracing::info!(%pool, "pool missing from the control plane; rebuilding it from the store");
                self.sync_from_store(pool).await?;
                self.control.acquire(pool, req, timeout).await
            }
            other => other,
        }
    }
}
