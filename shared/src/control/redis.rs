//! The Redis control plane (fred client: standalone, Sentinel or Cluster from the URL scheme).
//!
//! The client reconnects forever with capped exponential backoff, and every command carries a
//! timeout (fred's default is none), so Redis being down turns into fast errors, never hangs.

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config as FredConfig, ReconnectPolicy};

use super::{ControlError, CALL_TIMEOUT};

/// Time to establish one connection before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff: from 100 ms doubling up to 2 s, retrying forever (0 = unlimited).
const RECONNECT_MIN_MS: u32 = 100;
const RECONNECT_MAX_MS: u32 = 2_000;

/// Redis-backed control plane.
pub struct RedisControlPlane {
    client: fred::clients::Client,
    prefix: String,
}

impl std::fmt::Debug for RedisControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisControlPlane")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisControlPlane {
    /// Builds the client and starts connecting in the background.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, ControlError> {
        let config = FredConfig::from_url(url).map_err(|e| ControlError::Config(e.to_string()))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CALL_TIMEOUT;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = CALL_TIMEOUT;
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_MS,
                RECONNECT_MAX_MS,
                2,
            ))
            .build()
            .map_err(|e| ControlError::Config(e.to_string()))?;
        // The handle finishes only when the client quits; connection errors are retried by the
        // reconnect policy and surface through `ping`.
        drop(client.connect());
        Ok(RedisControlPlane {
            client,
            prefix: prefix.to_owned(),
        })
    }

    /// The key prefix (`REDIS_POOL_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub async fn ping(&self) -> Result<(), ControlError> {
        if !self.client.is_connected() {
            return Err(ControlError::Unavailable("not connected".to_owned()));
        }
        match tokio::time::timeout(CALL_TIMEOUT, self.client.ping::<String>(None)).await {
            Err(_) => Err(ControlError::OutcomeUnknown(format!(
                "PING timed out after {CALL_TIMEOUT:?}"
            ))),
            Ok(Err(e)) => Err(ControlError::Unavailable(e.to_string())),
            Ok(Ok(_)) => Ok(()),
        }
    }

    pub async fn close(&self) {
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.client.quit()).await;
    }
}
