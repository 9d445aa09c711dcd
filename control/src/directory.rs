//! Pools as the data plane and the coordinator use them: the control plane, backed by the store.
//!
//! The control plane holds each pool's configuration as synced from the database. When it has
//! none — the pool was never synced, or Redis restarted empty — [`Pools`] loads the server from
//! the store, syncs it and retries once, so pools rebuild themselves on next use (SPEC §8).

use std::time::Duration;

use super::{AcquireRequest, Acquired, Attempt, ControlError, ControlPlane, PoolSpec};
use poolgate_shared::domain::server::ServerId;
use poolgate_store::Store;

/// The control plane plus the store it is rebuilt from.
#[derive(Clone, Debug)]
pub struct Pools {
    pub control: ControlPlane,
    pub store: Store,
}

impl Pools {
    pub fn new(control: ControlPlane, store: Store) -> Self {
        Pools { control, store }
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

    /// One [`ControlPlane::try_acquire`] (rebuilding a lost pool): `None` when it would wait.
    pub async fn try_acquire(&self, pool: &ServerId, req: &AcquireRequest) -> Result<Option<Acquired>, ControlError> {
        let attempt = match self.control.try_acquire(pool, req).await {
            Err(ControlError::NotConfigured) => {
                tracing::info!(%pool, "pool missing from the control plane; rebuilding it from the store");
                self.sync_from_store(pool).await?;
                self.control.try_acquire(pool, req).await?
            }
            other => other?,
        };
        Ok(match attempt {
            Attempt::Leased(lease) => Some(Acquired::Leased(lease)),
            Attempt::Create(resv) => Some(Acquired::Create(resv)),
            Attempt::Wait { .. } => None,
        })
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
