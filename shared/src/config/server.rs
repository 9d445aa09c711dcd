//! `server.*`: where the node (and the coordinator's probes) listen, logging, shutdown, the
//! admin body limit, and the connection hygiene of the node's HTTP server (header, body and idle
//! keep-alive timeouts, the node's cap on concurrent requests, the per-IP connection limit) — a
//! client that is slow, idle or too many must not hold the node's sockets and tasks.

use std::time::Duration;

use super::keys;
use super::sources::{list, Sources};
use super::{ConfigError, Summary};

pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 4444;
pub const DEFAULT_COORDINATOR_PORT: u16 = 9100;
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 30;
pub const DEFAULT_ADMIN_BODY_LIMIT: usize = 64 * 1024;
/// Long enough for any real client on a slow link; short enough that a slow-header client holds
/// a socket for seconds, not forever.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECONDS: u64 = 10;
/// Real requests are kilobytes; even a body at the MCP limit (4 MiB) arrives in time at ~1.2 Mbit/s.
pub const DEFAULT_BODY_READ_TIMEOUT_SECONDS: u64 = 30;
/// Longer than the usual load balancer idle timeout (60 s), so the balancer closes an idle
/// connection first and never sends a request on one the node is closing.
pub const DEFAULT_KEEPALIVE_TIMEOUT_SECONDS: u64 = 75;
/// Well above what a node serves at its measured capacity, well below what exhausts its memory
/// or file descriptors: a brake for floods, not a tuning knob.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 4096;
/// Off: many clients share one address behind NAT or a proxy.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 0;

/// `server.*`: where the node listens and how it logs.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// The coordinator's probe and metrics port.
    pub coordinator_port: u16,
    pub log_level: String,
    pub shutdown_grace: Duration,
    pub admin_body_limit: usize,
    /// Origins a browser may call the MCP endpoint from (lowercase `scheme://host[:port]`; `*`
    /// allows any). Empty: only the origin of the host the request was sent to.
    pub allowed_origins: Vec<String>,
    /// A new connection's first complete request head must arrive within this.
    pub header_read_timeout: Duration,
    /// A request's whole body must arrive within this of its head (the answer, however long it
    /// streams, is not bounded by it).
    pub body_read_timeout: Duration,
    /// After an answer, the next complete request head on the connection must arrive within this.
    pub keepalive_timeout: Duration,
    /// Requests the node serves at once, probes excluded; `None`: no cap.
    pub max_concurrent_requests: Option<usize>,
    /// Open connections per client IP address; `None`: no limit.
    pub max_connections_per_ip: Option<usize>,
}

impl ServerSettings {
    pub(super) fn load(src: &Sources<'_>) -> Result<ServerSettings, ConfigError> {
        Ok(ServerSettings {
            host: src
                .get_opt_string(&keys::HOST)
                .map(|(v, _)| v)
                .unwrap_or_else(|| DEFAULT_HOST.to_owned()),
            port: src.get(&keys::PORT, DEFAULT_PORT, "must be a port number 0-65535")?,
            coordinator_port: src.get(
                &keys::COORDINATOR_PORT,
                DEFAULT_COORDINATOR_PORT,
                "must be a port number 0-65535",
            )?,
            log_level: src
                .get_opt_string(&keys::LOG_LEVEL)
                .map(|(v, _)| v.to_ascii_lowercase())
                .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
            shutdown_grace: Duration::from_secs(src.get(
                &keys::SHUTDOWN_GRACE_SECONDS,
                DEFAULT_SHUTDOWN_GRACE_SECONDS,
                "must be a whole number of seconds",
            )?),
            admin_body_limit: src.get(
                &keys::ADMIN_BODY_LIMIT,
                DEFAULT_ADMIN_BODY_LIMIT,
                "must be a number of bytes",
            )?,
            allowed_origins: src
                .get_opt_string(&keys::ALLOWED_ORIGINS)
                .map(|(v, _)| list(&v).map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect())
                .unwrap_or_default(),
            header_read_timeout: src
                .get_secs(&keys::SERVER_HEADER_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT_SECONDS)?,
            body_read_timeout: src.get_secs(&keys::SERVER_BODY_READ_TIMEOUT, DEFAULT_BODY_READ_TIMEOUT_SECONDS)?,
            keepalive_timeout: src.get_secs(&keys::SERVER_KEEPALIVE_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT_SECONDS)?,
            max_concurrent_requests: Some(src.get(
                &keys::SERVER_MAX_CONCURRENT_REQUESTS,
                DEFAULT_MAX_CONCURRENT_REQUESTS,
                "must be a whole number of requests (0: no cap)",
            )?)
            .filter(|n| *n > 0),
            max_connections_per_ip: Some(src.get(
                &keys::SERVER_MAX_CONNECTIONS_PER_IP,
                DEFAULT_MAX_CONNECTIONS_PER_IP,
                "must be a whole number of connections (0: no limit)",
            )?)
            .filter(|n| *n > 0),
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
        if !LEVELS.contains(&self.log_level.as_str()) {
            return Err(ConfigError::invalid(
                keys::LOG_LEVEL.env,
                format!(
                    "must be one of trace, debug, info, warn, error (got {:?})",
                    self.log_level
                ),
            ));
        }
        if self.host.is_empty() {
            return Err(ConfigError::invalid(keys::HOST.env, "must not be empty"));
        }
        for origin in self.allowed_origins.iter().filter(|o| o.as_str() != "*") {
            let ok = url::Url::parse(origin)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/")
                .is_some_and(|u| u.query().is_none() && u.username().is_empty());
            if !ok {
                return Err(ConfigError::invalid(
                    keys::ALLOWED_ORIGINS.env,
                    format!("each entry must be an origin like https://app.example.com[:port] or * (got {origin:?})"),
                ));
            }
        }
        if self.admin_body_limit < 1024 {
            return Err(ConfigError::invalid(
                keys::ADMIN_BODY_LIMIT.env,
                "must be at least 1024 bytes",
            ));
        }
        Ok(())
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        out.extend([
            (keys::HOST.env, self.host.clone()),
            (keys::PORT.env, self.port.to_string()),
            (keys::COORDINATOR_PORT.env, self.coordinator_port.to_string()),
            (keys::LOG_LEVEL.env, self.log_level.clone()),
            (
                keys::SHUTDOWN_GRACE_SECONDS.env,
                self.shutdown_grace.as_secs().to_string(),
            ),
            (keys::ADMIN_BODY_LIMIT.env, self.admin_body_limit.to_string()),
            (
                keys::ALLOWED_ORIGINS.env,
                if self.allowed_origins.is_empty() {
                    "(same host only)".to_owned()
                } else {
                    self.allowed_origins.join(",")
                },
            ),
            (
                keys::SERVER_HEADER_READ_TIMEOUT.env,
                self.header_read_timeout.as_secs().to_string(),
            ),
            (
                keys::SERVER_BODY_READ_TIMEOUT.env,
                self.body_read_timeout.as_secs().to_string(),
            ),
            (
                keys::SERVER_KEEPALIVE_TIMEOUT.env,
                self.keepalive_timeout.as_secs().to_string(),
            ),
            (
                keys::SERVER_MAX_CONCURRENT_REQUESTS.env,
                self.max_concurrent_requests
                    .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
            ),
            (
                keys::SERVER_MAX_CONNECTIONS_PER_IP.env,
                self.max_connections_per_ip
                    .map_or_else(|| "off".to_owned(), |n| n.to_string()),
            ),
        ]);
    }
}
