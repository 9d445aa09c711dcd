//! Typed configuration: environment variables over `config.yaml` over defaults.
//!
//! Every key is declared once in [`keys`]; [`Config::load`] reads each from the environment (its
//! seed name, then aliases), else from the file, else takes the default constant, parses it into
//! one typed struct per section and runs [`Config::validate`]. Any bad value — unparsable, out of
//! range, an unknown `config.yaml` key — is a [`ConfigError`] that names the key and the rule, and
//! start-up stops. The environment is passed in as a function so tests never mutate process state.

pub mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::domain::pool::{PoolConfig, PoolConfigPatch};
use keys::Key;

pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 4444;
pub const DEFAULT_COORDINATOR_PORT: u16 = 9100;
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 30;
pub const DEFAULT_ADMIN_BODY_LIMIT: usize = 64 * 1024;
/// Embedded mode keeps its database in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://poolgate.db";
pub const DEFAULT_AUTH_REQUIRED: bool = true;
pub const DEFAULT_POOL_ADMIN_ROLES: &str = "admin,operator";
/// Global switch: `false` turns pooling off for every server whatever its own `pool_enabled`.
pub const DEFAULT_POOL_ENABLED: bool = true;
pub const DEFAULT_CLEANUP_INTERVAL: u64 = 300;
/// A warm upstream session younger than this is used without a pre-ping.
pub const DEFAULT_PRE_PING_WINDOW: u64 = 5;
pub const DEFAULT_HEALTH_CHECK_INTERVAL: u64 = 60;
pub const DEFAULT_METRICS_RETENTION_DAYS: u64 = 7;
pub const DEFAULT_REDIS_POOL_PREFIX: &str = "mcpgateway:pool:";
pub const DEFAULT_LEADER_TTL: u64 = 15;
pub const DEFAULT_LEADER_HEARTBEAT_INTERVAL: u64 = 5;
pub const DEFAULT_LEADER_RENEW_DEADLINE: u64 = 10;
/// HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Environment variable naming the config file; without it `./config.yaml` is read if present.
pub const CONFIG_FILE_ENV: &str = "POOLGATE_CONFIG";

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

/// Where a value came from; error messages name it the way the operator wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Env(&'static str),
    File(&'static str),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::File(path) => write!(f, "config.yaml {path}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// The raw layers before typing: the environment and the flattened file.
struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: BTreeMap<String, String>,
}

impl Sources<'_> {
    /// The raw value of `key` and where it came from; empty environment values count as unset.
    fn raw(&self, key: &Key) -> Option<(String, Origin)> {
        std::iter::once(key.env)
            .chain(key.aliases.iter().copied())
            .find_map(|name| {
                (self.env)(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (v, Origin::Env(name)))
            })
            .or_else(|| self.file.get(key.path).map(|v| (v.clone(), Origin::File(key.path))))
    }

    fn error(key: &Key, origin: &Origin, rule: impl fmt::Display) -> ConfigError {
        match origin {
            Origin::File(path) => ConfigError::invalid(format!("{} (config.yaml {path})", key.env), rule.to_string()),
            Origin::Env(name) => ConfigError::invalid(*name, rule.to_string()),
            Origin::Default => ConfigError::invalid(key.env, rule.to_string()),
        }
    }

    fn get<T: FromStr>(&self, key: &Key, default: T, rule: &str) -> Result<T, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some((raw, origin)) => raw
                .trim()
                .parse()
                .map_err(|_| Self::error(key, &origin, format!("{rule} (got {raw:?})"))),
        }
    }

    fn get_bool(&self, key: &Key, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some((raw, origin)) => parse_bool(&raw)
                .ok_or_else(|| Self::error(key, &origin, format!("must be true or false (got {raw:?})"))),
        }
    }

    fn get_opt_string(&self, key: &Key) -> Option<(String, Origin)> {
        self.raw(key).map(|(v, o)| (v.trim().to_owned(), o))
    }

    fn get_secs(&self, key: &Key, default: u64) -> Result<Duration, ConfigError> {
        let secs = self.get(key, default, "must be a whole number of seconds")?;
        if secs == 0 {
            let origin = self.raw(key).map(|(_, o)| o).unwrap_or(Origin::Default);
            return Err(Self::error(key, &origin, "must be greater than 0 seconds"));
        }
        Ok(Duration::from_secs(secs))
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Flattens a YAML mapping into dotted paths, refusing keys that no setting uses.
fn flatten_yaml(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let yaml_err = |message: String| ConfigError::Yaml {
        path: path.to_owned(),
        message,
    };
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| yaml_err(e.to_string()))?;
    let mut out = BTreeMap::new();
    if value.is_null() {
        return Ok(out);
    }
    fn walk(prefix: &str, value: &serde_yaml::Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        let known = |p: &str| keys::ALL.iter().any(|k| k.path == p);
        let is_section = |p: &str| keys::ALL.iter().any(|k| k.path.starts_with(&format!("{p}.")));
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in map {
                    let name = k.as_str().ok_or_else(|| format!("non-string key under {prefix:?}"))?;
                    let full = if prefix.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    if !known(&full) && !is_section(&full) {
                        return Err(format!("unknown key {full:?}"));
                    }
                    walk(&full, v, out)?;
                }
                Ok(())
            }
            _ if !known(prefix) => Err(format!("{prefix:?} must be a section (a mapping)")),
            serde_yaml::Value::Null => Ok(()),
            serde_yaml::Value::Bool(b) => {
                out.insert(prefix.to_owned(), b.to_string());
                Ok(())
            }
            serde_yaml::Value::Number(n) => {
                out.insert(prefix.to_owned(), n.to_string());
                Ok(())
            }
            serde_yaml::Value::String(s) => {
                out.insert(prefix.to_owned(), s.clone());
                Ok(())
            }
            serde_yaml::Value::Sequence(items) => {
                let parts = items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{prefix:?} must be a list of strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(prefix.to_owned(), parts.join(","));
                Ok(())
            }
            serde_yaml::Value::Tagged(_) => Err(format!("{prefix:?}: YAML tags are not supported")),
        }
    }
    walk("", &value, &mut out).map_err(yaml_err)?;
    Ok(out)
}

/// A value that must not appear in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Shows a URL with its password replaced, for logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            // set_password only fails for URLs that cannot hold one, which `password()` ruled out.
            let _ = u.set_password(Some("[redacted]"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "[unparsable url]".to_owned(),
    }
}

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
}

/// Which database, and so which dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    Postgres,
    Sqlite,
}

/// `database.*`.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub kind: DatabaseKind,
    /// Whether `DATABASE_URL` was given rather than defaulted.
    pub explicit: bool,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("kind", &self.kind)
            .finish()
    }
}

/// `auth.*`.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub required: bool,
    pub jwt_secret_key: Option<Secret>,
    pub admin_roles: Vec<String>,
    /// Former secrets whose client session ids are still accepted (rotation).
    pub session_secret_fallbacks: Vec<Secret>,
}

/// `pooling.manager.*`: the coordinator's loop intervals.
#[derive(Clone, Debug)]
pub struct ManagerSettings {
    pub cleanup_interval: Duration,
    pub health_check_interval: Duration,
    pub metrics_retention_days: u64,
}

/// `pooling.redis.*`. `url` is `None` in embedded mode.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: Option<Secret>,
    pub prefix: String,
    pub leader_ttl: Duration,
    pub leader_heartbeat_interval: Duration,
    pub leader_renew_deadline: Duration,
}

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

/// `pooling.*`.
#[derive(Clone, Debug)]
pub struct PoolingSettings {
    pub enabled: bool,
    /// Warm sessions younger than this skip the pre-ping (`pool_pre_ping`).
    pub pre_ping_window: Duration,
    /// Pool configuration given to servers registered without one.
    pub defaults: PoolConfig,
    pub manager: ManagerSettings,
    pub redis: RedisSettings,
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
                flatten_yaml(path, &text)?
            }
        };
        let src = Sources { env, file: file_map };

        let server = ServerSettings {
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
        };

        let db_raw = src.get_opt_string(&keys::DATABASE_URL);
        let database = DatabaseSettings {
            explicit: db_raw.is_some(),
            kind: DatabaseKind::Sqlite,
            url: db_raw
                .map(|(v, _)| v)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
        };

        let auth = AuthSettings {
            required: src.get_bool(&keys::AUTH_REQUIRED, DEFAULT_AUTH_REQUIRED)?,
            jwt_secret_key: src.get_opt_string(&keys::JWT_SECRET_KEY).map(|(v, _)| Secret(v)),
            admin_roles: src
                .get_opt_string(&keys::POOL_ADMIN_ROLES)
                .map(|(v, _)| v)
                .unwrap_or_else(|| DEFAULT_POOL_ADMIN_ROLES.to_owned())
                .split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect(),
            session_secret_fallbacks: src
                .get_opt_string(&keys::SESSION_SECRET_FALLBACKS)
                .map(|(v, _)| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(Secret::new)
                        .collect()
                })
                .unwrap_or_default(),
        };

        let defaults = pool_defaults(&src)?;

        let redis_url = src.get_opt_string(&keys::REDIS_URL);
        let redis_enabled = match src.raw(&keys::REDIS_ENABLED) {
            None => redis_url.is_some(),
            Some(_) => src.get_bool(&keys::REDIS_ENABLED, false)?,
        };
        if redis_enabled && redis_url.is_none() {
            return Err(ConfigError::invalid(
                keys::REDIS_URL.env,
                "is required when REDIS_ENABLED is true",
            ));
        }
        let pooling = PoolingSettings {
            enabled: src.get_bool(&keys::POOL_ENABLED, DEFAULT_POOL_ENABLED)?,
            pre_ping_window: Duration::from_secs(src.get(
                &keys::POOL_PRE_PING_WINDOW,
                DEFAULT_PRE_PING_WINDOW,
                "must be a whole number of seconds",
            )?),
            defaults,
            manager: ManagerSettings {
                cleanup_interval: src.get_secs(&keys::POOL_MANAGER_CLEANUP_INTERVAL, DEFAULT_CLEANUP_INTERVAL)?,
                health_check_interval: src
                    .get_secs(&keys::POOL_MANAGER_HEALTH_CHECK_INTERVAL, DEFAULT_HEALTH_CHECK_INTERVAL)?,
                metrics_retention_days: src.get(
                    &keys::POOL_MANAGER_METRICS_RETENTION_DAYS,
                    DEFAULT_METRICS_RETENTION_DAYS,
                    "must be a whole number of days",
                )?,
            },
            redis: RedisSettings {
                url: redis_url.filter(|_| redis_enabled).map(|(v, _)| Secret(v)),
                prefix: src
                    .get_opt_string(&keys::REDIS_POOL_PREFIX)
                    .map(|(v, _)| v)
                    .unwrap_or_else(|| DEFAULT_REDIS_POOL_PREFIX.to_owned()),
                leader_ttl: src.get_secs(&keys::REDIS_LEADER_TTL, DEFAULT_LEADER_TTL)?,
                leader_heartbeat_interval: src.get_secs(
                    &keys::REDIS_LEADER_HEARTBEAT_INTERVAL,
                    DEFAULT_LEADER_HEARTBEAT_INTERVAL,
                )?,
                leader_renew_deadline: src
                    .get_secs(&keys::REDIS_LEADER_RENEW_DEADLINE, DEFAULT_LEADER_RENEW_DEADLINE)?,
            },
        };

        let mut config = Config {
            server,
            database,
            auth,
            pooling,
            file: file.map(Path::to_owned),
        };
        config.database.kind = database_kind(&config.database.url)?;
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

    /// The rules that span keys or need more than parsing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
        if !LEVELS.contains(&self.server.log_level.as_str()) {
            return Err(ConfigError::invalid(
                keys::LOG_LEVEL.env,
                format!(
                    "must be one of trace, debug, info, warn, error (got {:?})",
                    self.server.log_level
                ),
            ));
        }
        if self.server.host.is_empty() {
            return Err(ConfigError::invalid(keys::HOST.env, "must not be empty"));
        }
        if self.server.admin_body_limit < 1024 {
            return Err(ConfigError::invalid(
                keys::ADMIN_BODY_LIMIT.env,
                "must be at least 1024 bytes",
            ));
        }
        if self.auth.admin_roles.is_empty() {
            return Err(ConfigError::invalid(
                keys::POOL_ADMIN_ROLES.env,
                "must name at least one role",
            ));
        }
        if let Some(secret) = &self.auth.jwt_secret_key {
            if secret.expose().len() < MIN_JWT_SECRET_BYTES {
                return Err(ConfigError::invalid(
                    keys::JWT_SECRET_KEY.env,
                    format!("must be at least {MIN_JWT_SECRET_BYTES} bytes for HS256"),
                ));
            }
        }
        if self
            .auth
            .session_secret_fallbacks
            .iter()
            .any(|s| s.expose().len() < MIN_JWT_SECRET_BYTES)
        {
            return Err(ConfigError::invalid(
                keys::SESSION_SECRET_FALLBACKS.env,
                format!("every secret must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            ));
        }
        if self.pooling.manager.metrics_retention_days == 0 {
            return Err(ConfigError::invalid(
                keys::POOL_MANAGER_METRICS_RETENTION_DAYS.env,
                "must be at least 1 day",
            ));
        }
        let r = &self.pooling.redis;
        if r.prefix.is_empty()
            || r.prefix.len() > 64
            || r.prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
        {
            return Err(ConfigError::invalid(
                keys::REDIS_POOL_PREFIX.env,
                "must be 1-64 characters without whitespace, '{' or '}' (they would break hash tags)",
            ));
        }
        if !(r.leader_ttl > r.leader_renew_deadline && r.leader_renew_deadline > r.leader_heartbeat_interval) {
            return Err(ConfigError::invalid(
                keys::REDIS_LEADER_RENEW_DEADLINE.env,
                format!(
                    "must satisfy REDIS_LEADER_TTL ({}s) > REDIS_LEADER_RENEW_DEADLINE ({}s) > REDIS_LEADER_HEARTBEAT_INTERVAL ({}s)",
                    r.leader_ttl.as_secs(),
                    r.leader_renew_deadline.as_secs(),
                    r.leader_heartbeat_interval.as_secs()
                ),
            ));
        }
        if let Some(url) = &r.url {
            let parsed = url::Url::parse(url.expose())
                .map_err(|e| ConfigError::invalid(keys::REDIS_URL.env, format!("is not a URL ({e})")))?;
            const SCHEMES: [&str; 6] = [
                "redis",
                "rediss",
                "redis-sentinel",
                "rediss-sentinel",
                "redis-cluster",
                "rediss-cluster",
            ];
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

    /// One line per key with its effective value (secrets redacted) and origin, for the start-up log.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let d = &self.pooling.defaults;
        let r = &self.pooling.redis;
        let m = &self.pooling.manager;
        let secret = |s: &Option<Secret>| {
            if s.is_some() {
                "[redacted]".to_owned()
            } else {
                "(unset)".to_owned()
            }
        };
        vec![
            ("mode", format!("{:?}", self.mode()).to_lowercase()),
            (
                "config_file",
                self.file
                    .as_ref()
                    .map_or("(none)".to_owned(), |p| p.display().to_string()),
            ),
            (keys::HOST.env, self.server.host.clone()),
            (keys::PORT.env, self.server.port.to_string()),
            (keys::COORDINATOR_PORT.env, self.server.coordinator_port.to_string()),
            (keys::LOG_LEVEL.env, self.server.log_level.clone()),
            (
                keys::SHUTDOWN_GRACE_SECONDS.env,
                self.server.shutdown_grace.as_secs().to_string(),
            ),
            (keys::ADMIN_BODY_LIMIT.env, self.server.admin_body_limit.to_string()),
            (keys::DATABASE_URL.env, redact_url(&self.database.url)),
            (keys::AUTH_REQUIRED.env, self.auth.required.to_string()),
            (keys::JWT_SECRET_KEY.env, secret(&self.auth.jwt_secret_key)),
            (keys::POOL_ADMIN_ROLES.env, self.auth.admin_roles.join(",")),
            (
                keys::SESSION_SECRET_FALLBACKS.env,
                format!("{} secret(s) [redacted]", self.auth.session_secret_fallbacks.len()),
            ),
            (keys::POOL_ENABLED.env, self.pooling.enabled.to_string()),
            (keys::POOL_DEFAULT_STRATEGY.env, d.pool_strategy.to_string()),
            (keys::POOL_DEFAULT_MIN_SIZE.env, d.pool_min_size.to_string()),
            (keys::POOL_DEFAULT_MAX_SIZE.env, d.pool_max_size.to_string()),
            (keys::POOL_DEFAULT_TIMEOUT.env, d.pool_timeout.to_string()),
            (
                keys::POOL_DEFAULT_RECYCLE_SECONDS.env,
                d.pool_recycle_seconds.to_string(),
            ),
            (keys::POOL_DEFAULT_PRE_PING.env, d.pool_pre_ping.to_string()),
            (keys::POOL_DEFAULT_ISOLATION.env, d.pool_isolation.to_string()),
            (
                keys::POOL_DEFAULT_SESSION_CAPACITY.env,
                d.pool_session_capacity.to_string(),
            ),
            (keys::POOL_DEFAULT_LEASE_TTL.env, d.pool_lease_ttl.to_string()),
            (keys::POOL_DEFAULT_IDLE_TTL.env, d.pool_idle_ttl.to_string()),
            (
                keys::POOL_PRE_PING_WINDOW.env,
                self.pooling.pre_ping_window.as_secs().to_string(),
            ),
            (
                keys::POOL_MANAGER_CLEANUP_INTERVAL.env,
                m.cleanup_interval.as_secs().to_string(),
            ),
            (
                keys::POOL_MANAGER_HEALTH_CHECK_INTERVAL.env,
                m.health_check_interval.as_secs().to_string(),
            ),
            (
                keys::POOL_MANAGER_METRICS_RETENTION_DAYS.env,
                m.metrics_retention_days.to_string(),
            ),
            (
                keys::REDIS_URL.env,
                r.url.as_ref().map_or("(unset)".to_owned(), |u| redact_url(u.expose())),
            ),
            (keys::REDIS_POOL_PREFIX.env, r.prefix.clone()),
            (keys::REDIS_LEADER_TTL.env, r.leader_ttl.as_secs().to_string()),
            (
                keys::REDIS_LEADER_HEARTBEAT_INTERVAL.env,
                r.leader_heartbeat_interval.as_secs().to_string(),
            ),
            (
                keys::REDIS_LEADER_RENEW_DEADLINE.env,
                r.leader_renew_deadline.as_secs().to_string(),
            ),
        ]
    }
}

fn database_kind(url: &str) -> Result<DatabaseKind, ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseKind::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(DatabaseKind::Sqlite)
    } else {
        Err(ConfigError::invalid(
            keys::DATABASE_URL.env,
            "must start with postgres://, postgresql:// or sqlite:",
        ))
    }
}

/// `POOL_DEFAULT_*` go through the same validation as the admin API, so a default can never be a
/// value the API would refuse; the error names the setting rather than the API field.
fn pool_defaults(src: &Sources<'_>) -> Result<PoolConfig, ConfigError> {
    let int = |key: &Key| -> Result<Option<i64>, ConfigError> {
        match src.raw(key) {
            None => Ok(None),
            Some((raw, origin)) => raw
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Sources::error(key, &origin, format!("must be a whole number (got {raw:?})"))),
        }
    };
    let boolean = |key: &Key| -> Result<Option<bool>, ConfigError> {
        match src.raw(key) {
            None => Ok(None),
            Some(_) => src.get_bool(key, false).map(Some),
        }
    };
    let text = |key: &Key| src.get_opt_string(key).map(|(v, _)| v);
    let patch = PoolConfigPatch {
        pool_enabled: None,
        pool_strategy: text(&keys::POOL_DEFAULT_STRATEGY),
        pool_min_size: int(&keys::POOL_DEFAULT_MIN_SIZE)?,
        pool_max_size: int(&keys::POOL_DEFAULT_MAX_SIZE)?,
        pool_timeout: int(&keys::POOL_DEFAULT_TIMEOUT)?,
        pool_recycle_seconds: int(&keys::POOL_DEFAULT_RECYCLE_SECONDS)?,
        pool_pre_ping: boolean(&keys::POOL_DEFAULT_PRE_PING)?,
        pool_isolation: text(&keys::POOL_DEFAULT_ISOLATION),
        pool_session_capacity: int(&keys::POOL_DEFAULT_SESSION_CAPACITY)?,
        pool_lease_ttl: int(&keys::POOL_DEFAULT_LEASE_TTL)?,
        pool_idle_ttl: int(&keys::POOL_DEFAULT_IDLE_TTL)?,
        pool_auto_optimize: None,
    };
    PoolConfig::default().apply(&patch).map_err(|e| {
        let key = match e.field.as_str() {
            "pool_strategy" => keys::POOL_DEFAULT_STRATEGY,
            "pool_min_size" => keys::POOL_DEFAULT_MIN_SIZE,
            "pool_max_size" => keys::POOL_DEFAULT_MAX_SIZE,
            "pool_timeout" => keys::POOL_DEFAULT_TIMEOUT,
            "pool_recycle_seconds" => keys::POOL_DEFAULT_RECYCLE_SECONDS,
            "pool_isolation" => keys::POOL_DEFAULT_ISOLATION,
            "pool_session_capacity" => keys::POOL_DEFAULT_SESSION_CAPACITY,
            "pool_lease_ttl" => keys::POOL_DEFAULT_LEASE_TTL,
            _ => keys::POOL_DEFAULT_IDLE_TTL,
        };
        let origin = src.raw(&key).map(|(_, o)| o).unwrap_or(Origin::Default);
        Sources::error(&key, &origin, e.rule)
    })
}

#[cfg(test)]
mod tests;
