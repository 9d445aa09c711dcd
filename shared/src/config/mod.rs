//! Typed configuration: environment variables over `config.yaml` over defaults.
//!
//! Every key is declared once in [`keys`]; [`Config::load`] reads each from the environment (its
//! seed name, then aliases), else from the file, else takes the default constant, parses it into
//! one typed struct per section and runs [`Config::validate`]. Any bad value — unparsable, out of
//! range, an unknown `config.yaml` key — is a [`ConfigError`] that names the key and the rule, and
//! start-up stops. The environment is passed in as a function so tests never mutate process state.
//!
//! # Layout
//! - `keys.rs`: the single table of setting names (env name, aliases, YAML path).
//! - `sources.rs`: the raw layers ([`Origin`], the typed getters that name the bad key),
//!   [`Secret`] and [`redact_url`].
//! - One file per section, each with its defaults, `load`, `validate` and `summary`:
//!   `server.rs` ([`ServerSettings`]), `database.rs` ([`DatabaseSettings`]), `auth.rs`
//!   ([`AuthSettings`]), `pooling.rs` ([`PoolingSettings`], [`ManagerSettings`], the
//!   `POOL_DEFAULT_*` pool configuration), `audit.rs` ([`AuditSettings`], `pooling.audit.*`: the
//!   audit file), `redis.rs` ([`RedisSettings`]), `upstream.rs`
//!   ([`UpstreamSettings`]: answer size limits, request timeout, circuit breakers), `tls.rs`
//!   ([`TlsSettings`], `upstream.tls.*`: seed 000's `POOL_TLS_*`, private CAs and a client
//!   certificate for upstream HTTPS).
//! - `unread.rs`: [`unread_settings`], the start-up warnings naming every variable with a
//!   poolgate prefix that nothing reads (seed names poolgate does not support say why).
//! - `mod.rs`: [`Config`] (the sections together, the rules that span sections, [`Mode`]).

mod audit;
mod auth;
mod database;
pub mod keys;
mod pooling;
mod redis;
mod server;
mod sources;
mod tls;
mod unread;
mod upstream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use audit::{AuditSettings, DEFAULT_AUDIT_ENABLED, DEFAULT_AUDIT_LOG_PATH};
pub use auth::{
    AuthSettings, DEFAULT_AUTH_REQUIRED, DEFAULT_METRICS_AUTH_REQUIRED, DEFAULT_POOL_ADMIN_ROLES,
    DEFAULT_SESSION_MAX_AGE, MIN_JWT_SECRET_BYTES,
};
pub use database::{
    DatabaseKind, DatabaseSettings, DbPoolSettings, DEFAULT_DATABASE_URL, DEFAULT_DB_POOL_SIZE, DEFAULT_DB_POOL_TIMEOUT,
};
pub use pooling::{
    ManagerSettings, PoolingSettings, DEFAULT_CLEANUP_INTERVAL, DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_METRICS_RETENTION_DAYS, DEFAULT_POOL_ENABLED, DEFAULT_PRE_PING_WINDOW, DEFAULT_RECONCILE_INTERVAL,
    DEFAULT_WARMUP_INTERVAL,
};
pub use redis::{
    RedisSettings, DEFAULT_LEADER_HEARTBEAT_INTERVAL, DEFAULT_LEADER_RENEW_DEADLINE, DEFAULT_LEADER_TTL,
    DEFAULT_REDIS_POOL_PREFIX,
};
pub use server::{
    ServerSettings, DEFAULT_ADMIN_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT_SECONDS, DEFAULT_COORDINATOR_PORT,
    DEFAULT_HEADER_READ_TIMEOUT_SECONDS, DEFAULT_HOST, DEFAULT_KEEPALIVE_TIMEOUT_SECONDS, DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_CONNECTIONS_PER_IP, DEFAULT_PORT, DEFAULT_SHUTDOWN_GRACE_SECONDS,
};
use sources::Sources;
pub use sources::{redact_credentials, redact_url, Origin, Secret};
pub use tls::{TlsSettings, DEFAULT_TLS_ENABLED};
pub use unread::unread_settings;
pub use upstream::{
    UpstreamSettings, DEFAULT_UPSTREAM_BREAKER_OPEN_SECONDS, DEFAULT_UPSTREAM_BREAKER_THRESHOLD,
    DEFAULT_UPSTREAM_MAX_EVENT_BYTES, DEFAULT_UPSTREAM_MAX_RESPONSE_BYTES, DEFAULT_UPSTREAM_REQUEST_TIMEOUT,
};

/// Environment variable naming the config file; without it `./config.yaml` is read if present.
pub const CONFIG_FILE_ENV: &str = "POOLGATE_CONFIG";

/// The start-up log's lines: each key with its effective value (secrets redacted).
type Summary = Vec<(&'static str, String)>;

/// Why start-up stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting {key}: {rule}")]
    Invalid { key: String, rule: String },
    #[error("cannot read config file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, rule: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            rule: rule.into(),
        }
    }

    /// The setting the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Embedded: one process, in-process control plane, SQLite. Distributed: Redis + PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Distributed,
}

/// The whole effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub pooling: PoolingSettings,
    pub upstream: UpstreamSettings,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
}

impl Config {
    /// Reads the process environment and the config file it names (`POOLGATE_CONFIG`, else
    /// `./config.yaml` when present).
    pub fn from_process_env() -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        let file = match env(CONFIG_FILE_ENV) {
            Some(p) if !p.trim().is_empty() => Some(PathBuf::from(p)),
            _ => Some(PathBuf::from("config.yaml")).filter(|p| p.exists()),
        };
        Config::load(&env, file.as_deref())
    }

    /// Builds and validates the configuration from `env` and an optional YAML file.
    pub fn load(env: &dyn Fn(&str) -> Option<String>, file: Option<&Path>) -> Result<Config, ConfigError> {
        let file_map = match file {
            None => BTreeMap::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
                    path: path.to_owned(),
                    source,
                })?;
                sources::flatten_yaml(path, &text)?
            }
        };
        let src = Sources { env, file: file_map };
        let config = Config {
            server: ServerSettings::load(&src)?,
            database: DatabaseSettings::load(&src)?,
            auth: AuthSettings::load(&src)?,
            pooling: PoolingSettings::load(&src)?,
            upstream: UpstreamSettings::load(&src)?,
            file: file.map(Path::to_owned),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn mode(&self) -> Mode {
        if self.pooling.redis.url.is_some() {
            Mode::Distributed
        } else {
            Mode::Embedded
        }
    }

    /// Each section's rules, then the rules that span sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.auth.validate()?;
        self.pooling.validate()?;
        self.upstream.validate()?;
        let open = if !self.auth.required {
            Some(keys::AUTH_REQUIRED.env)
        } else if !self.auth.admin_required() {
            Some(keys::POOL_ADMIN_AUTH_REQUIRED.env)
        } else {
            None
        };
        if let (Some(key), false, false) = (
            open,
            self.auth.allow_insecure_auth_off,
            is_loopback_host(&self.server.host),
        ) {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "false with HOST {:?} would open poolgate's API to the network without a token; \
                     bind HOST to a loopback address (127.0.0.1, ::1, localhost) for local use, or set ALLOW_INSECURE_AUTH_OFF=true \
                     to accept that",
                    self.server.host
                ),
            ));
        }
        if self.mode() == Mode::Distributed {
            if self.database.kind != DatabaseKind::Postgres {
                return Err(ConfigError::invalid(
                    keys::DATABASE_URL.env,
                    "distributed mode (REDIS_URL set) needs a PostgreSQL DATABASE_URL (postgres://...); SQLite is for the embedded single node",
                ));
            }
            if self.auth.jwt_secret_key.is_none() {
                return Err(ConfigError::invalid(
                    keys::JWT_SECRET_KEY.env,
                    "is required in distributed mode: every node must verify the same tokens and session ids",
                ));
            }
        }
        Ok(())
    }

    /// One line per key with its effective value (secrets redacted), for the start-up log.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("mode", format!("{:?}", self.mode()).to_lowercase()),
            (
                "config_file",
                self.file
                    .as_ref()
                    .map_or("(none)".to_owned(), |p| p.display().to_string()),
            ),
        ];
        self.server.summary(&mut out);
        self.database.summary(&mut out);
        self.auth.summary(&mut out);
        self.pooling.summary(&mut out);
        self.upstream.summary(&mut out);
        out
    }
}

/// Whether `host` (a `HOST` setting) only listens on this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
