//! `pooling.redis.*`: the fleet's control plane (absent in embedded mode) and leader election
//! timing.

use std::fmt;
use std::time::Duration;

use super::keys;
use super::sources::{redact_url, Secret, Sources};
use super::{ConfigError, Summary};

pub const DEFAULT_REDIS_POOL_PREFIX: &str = "mcpgateway:pool:";
pub const DEFAULT_LEADER_TTL: u64 = 15;
pub const DEFAULT_LEADER_HEARTBEAT_INTERVAL: u64 = 5;
pub const DEFAULT_LEADER_RENEW_DEADLINE: u64 = 10;
/// The URL schemes the Redis client understands (TLS and topology from the scheme).
const SCHEMES: [&str; 6] = [
    "redis",
    "rediss",
    "redis-sentinel",
    "rediss-sentinel",
    "redis-cluster",
    "rediss-cluster",
];

/// `pooling.redis.*`. `url` is `None` in embedded mode.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: Option<Secret>,
    /// A `REDIS_URL` given while `REDIS_ENABLED=false`: not used, but shown as such at start-up.
    pub unused_url: Option<Secret>,
    pub prefix: String,
    pub leader_ttl: Duration,
    pub leader_heartbeat_interval: Duration,
    pub leader_renew_deadline: Duration,
    /// `REDIS_POOL_SIZE`: command connections per process (plus one for pub/sub).
    pub pool_size: u32,
    /// `REDIS_POOL_TIMEOUT`: the bound on every Redis call.
    pub pool_timeout: Duration,
    /// `REDIS_SOCKET_KEEPALIVE`: TCP keepalive probes on the connections.
    pub socket_keepalive: bool,
}

/// One multiplexed connection carries a node's calls well; more spread them.
pub const DEFAULT_REDIS_POOL_SIZE: u32 = 1;
pub const DEFAULT_REDIS_POOL_TIMEOUT: u64 = 2;
const MAX_REDIS_POOL_SIZE: u32 = 64;

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.url.as_ref().map(|u| redact_url(u.expose())))
            .field("prefix", &self.prefix)
            .field("leader_ttl", &self.leader_ttl)
            .field("leader_heartbeat_interval", &self.leader_heartbeat_interval)
            .field("leader_renew_deadline", &self.leader_renew_deadline)
            .finish()
    }
}

impl RedisSettings {
    pub(super) fn load(src: &Sources<'_>) -> Result<RedisSettings, ConfigError> {
        let url = src.get_opt_string(&keys::REDIS_URL);
        let enabled = match src.raw(&keys::REDIS_ENABLED) {
            None => url.is_some(),
            Some(_) => src.get_bool(&keys::REDIS_ENABLED, false)?,
        };
        if enabled && url.is_none() {
            return Err(ConfigError::invalid(
                keys::REDIS_URL.env,
                "is required when REDIS_ENABLED is true",
            ));
        }
        Ok(RedisSettings {
            unused_url: url.clone().filter(|_| !enabled).map(|(v, _)| Secret(v)),
            url: url.filter(|_| enabled).map(|(v, _)| Secret(v)),
            prefix: src
                .get_opt_string(&keys::REDIS_POOL_PREFIX)
                .map(|(v, _)| v)
                .unwrap_or_else(|| DEFAULT_REDIS_POOL_PREFIX.to_owned()),
            leader_ttl: src.get_secs(&keys::REDIS_LEADER_TTL, DEFAULT_LEADER_TTL)?,
            leader_heartbeat_interval: src.get_secs(
                &keys::REDIS_LEADER_HEARTBEAT_INTERVAL,
                DEFAULT_LEADER_HEARTBEAT_INTERVAL,
            )?,
            leader_renew_deadline: src.get_secs(&keys::REDIS_LEADER_RENEW_DEADLINE, DEFAULT_LEADER_RENEW_DEADLINE)?,
            pool_size: src.get(
                &keys::REDIS_POOL_SIZE,
                DEFAULT_REDIS_POOL_SIZE,
                "must be a whole number of connections",
            )?,
            pool_timeout: src.get_secs(&keys::REDIS_POOL_TIMEOUT, DEFAULT_REDIS_POOL_TIMEOUT)?,
            socket_keepalive: src.get_bool(&keys::REDIS_SOCKET_KEEPALIVE, false)?,
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.prefix.is_empty()
            || self.prefix.len() > 64
            || self
                .prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
        {
            return Err(ConfigError::invalid(
                keys::REDIS_POOL_PREFIX.env,
                "must be 1-64 characters without whitespace, '{' or '}' (they would break hash tags)",
            ));
        }
        let (ttl, deadline, heartbeat) = (
            self.leader_ttl,
            self.leader_renew_deadline,
            self.leader_heartbeat_interval,
        );
        if !(ttl > deadline && deadline > heartbeat) {
            return Err(ConfigError::invalid(
                keys::REDIS_LEADER_RENEW_DEADLINE.env,
                format!(
                    "must satisfy REDIS_LEADER_TTL ({}s) > REDIS_LEADER_RENEW_DEADLINE ({}s) > REDIS_LEADER_HEARTBEAT_INTERVAL ({}s)",
                    ttl.as_secs(),
                    deadline.as_secs(),
                    heartbeat.as_secs()
                ),
            ));
        }
        if !(1..=MAX_REDIS_POOL_SIZE).contains(&self.pool_size) {
            return Err(ConfigError::invalid(
                keys::REDIS_POOL_SIZE.env,
                format!("must be 1 to {MAX_REDIS_POOL_SIZE} (got {})", self.pool_size),
            ));
        }
        if let Some(url) = &self.url {
            let parsed = url::Url::parse(url.expose())
                .map_err(|e| ConfigError::invalid(keys::REDIS_URL.env, format!("is not a URL ({e})")))?;
            if parsed.query_pairs().any(|(k, v)| k == "cluster" && v != "false") {
                return Err(ConfigError::invalid(
                    keys::REDIS_URL.env,
                    "?cluster=true is not how poolgate selects Redis Cluster: use redis-cluster://HOST:PORT?node=HOST2:PORT2 (or rediss-cluster:// for TLS)",
                ));
            }
            if !SCHEMES.contains(&parsed.scheme()) {
                return Err(ConfigError::invalid(
                    keys::REDIS_URL.env,
                    format!(
                        "scheme must be one of {} (got {:?})",
                        SCHEMES.join(", "),
                        parsed.scheme()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        out.extend([
            (keys::REDIS_ENABLED.env, self.url.is_some().to_string()),
            (
                keys::REDIS_URL.env,
                match (&self.url, &self.unused_url) {
                    (Some(u), _) => redact_url(u.expose()),
                    (None, Some(u)) => format!("{} (not used: REDIS_ENABLED=false)", redact_url(u.expose())),
                    (None, None) => "(unset)".to_owned(),
                },
            ),
            (keys::REDIS_POOL_PREFIX.env, self.prefix.clone()),
            (keys::REDIS_POOL_SIZE.env, self.pool_size.to_string()),
            (keys::REDIS_POOL_TIMEOUT.env, self.pool_timeout.as_secs().to_string()),
            (keys::REDIS_SOCKET_KEEPALIVE.env, self.socket_keepalive.to_string()),
            (keys::REDIS_LEADER_TTL.env, self.leader_ttl.as_secs().to_string()),
            (
                keys::REDIS_LEADER_HEARTBEAT_INTERVAL.env,
                self.leader_heartbeat_interval.as_secs().to_string(),
            ),
            (
                keys::REDIS_LEADER_RENEW_DEADLINE.env,
                self.leader_renew_deadline.as_secs().to_string(),
            ),
        ]);
    }
}
