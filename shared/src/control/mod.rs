//! The control plane: where a pool's fleet-wide state lives and changes.
//!
//! Two implementations behind one type: [`EmbeddedControlPlane`] (in-process, the single node)
//! and [`RedisControlPlane`] (Redis standalone, Sentinel or Cluster, shared by the fleet). Nodes
//! and the coordinator hold a [`ControlPlane`] and never know which one they have — that is the
//! seam the pool operations (acquire, release, bind, leader election …) plug into.
//!
//! For now the seam carries the one operation the foundation needs: a bounded health check for
//! `/ready`.

mod embedded;
mod redis;

use std::sync::Arc;
use std::time::Duration;

pub use embedded::EmbeddedControlPlane;
pub use redis::RedisControlPlane;

use crate::config::{Config, Mode};

/// Upper bound on any single control-plane call; past it the outcome is unknown.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Control-plane failures. The variants keep apart what callers must treat differently.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Redis cannot be reached (or refused the connection); nothing was done.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The call timed out or the connection dropped mid-call: it may or may not have run.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The configuration cannot produce a client (bad URL).
    #[error("control plane configuration: {0}")]
    Config(String),
}

/// The control plane a process uses; cheap to clone.
#[derive(Clone, Debug)]
pub enum ControlPlane {
    Embedded(Arc<EmbeddedControlPlane>),
    Redis(Arc<RedisControlPlane>),
}

impl ControlPlane {
    /// The control plane `config` asks for. Redis connects in the background, so a node starts
    /// (and reports not ready) while Redis is down, and recovers without a restart.
    pub fn from_config(config: &Config) -> Result<ControlPlane, ControlError> {
        match (config.mode(), &config.pooling.redis.url) {
            (Mode::Distributed, Some(url)) => Ok(ControlPlane::Redis(Arc::new(RedisControlPlane::connect(
                url.expose(),
                &config.pooling.redis.prefix,
            )?))),
            _ => Ok(ControlPlane::Embedded(Arc::new(EmbeddedControlPlane::new()))),
        }
    }

    /// `"embedded"` or `"redis"`, for logs and `/ready`.
    pub fn backend(&self) -> &'static str {
        match self {
            ControlPlane::Embedded(_) => "embedded",
            ControlPlane::Redis(_) => "redis",
        }
    }

    /// Whether the control plane can serve calls now.
    pub async fn ping(&self) -> Result<(), ControlError> {
        match self {
            ControlPlane::Embedded(c) => c.ping(),
            ControlPlane::Redis(c) => c.ping().await,
        }
    }

    /// Closes connections (shutdown).
    pub async fn close(&self) {
        if let ControlPlane::Redis(c) = self {
            c.close().await;
        }
    }
}
