//! `pooling.*`: the global switch, the pre-ping window, the pool configuration given to new
//! servers (`POOL_DEFAULT_*`, validated exactly as the admin API validates) and the leader's pass
//! intervals (`pooling.manager.*`). Redis settings live in [`super::redis`], the audit file's in
//! [`super::audit`].

use std::time::Duration;

use crate::domain::pool::{PoolConfig, PoolConfigPatch, QuotaValue};

use super::audit::AuditSettings;
use super::keys::{self, Key};
use super::redis::RedisSettings;
use super::sources::{Origin, Sources};
use super::{ConfigError, Summary};

/// Global switch: `false` turns pooling off for every server whatever its own `pool_enabled`.
pub const DEFAULT_POOL_ENABLED: bool = true;
pub const DEFAULT_CLEANUP_INTERVAL: u64 = 300;
/// A warm upstream session younger than this is used without a pre-ping.
pub const DEFAULT_PRE_PING_WINDOW: u64 = 5;
pub const DEFAULT_HEALTH_CHECK_INTERVAL: u64 = 60;
pub const DEFAULT_METRICS_RETENTION_DAYS: u64 = 7;
/// The database is the truth for pool configuration: every pool is re-synced this often.
pub const DEFAULT_RECONCILE_INTERVAL: u64 = 5;
/// Warm-up tops pools up to `pool_min_size` this often.
pub const DEFAULT_WARMUP_INTERVAL: u64 = 1;

/// `pooling.manager.*`: the coordinator's loop intervals.
#[derive(Clone, Debug)]
pub struct ManagerSettings {
    pub cleanup_interval: Duration,
    /// `POOL_MANAGER_RECONCILE_INTERVAL`.
    pub reconcile_interval: Duration,
    /// `POOL_MANAGER_WARMUP_INTERVAL`.
    pub warmup_interval: Duration,
    pub health_check_interval: Duration,
    pub metrics_retention_days: u64,
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
    /// `pooling.audit.*`: the audit file.
    pub audit: AuditSettings,
    pub redis: RedisSettings,
}

impl PoolingSettings {
    pub(super) fn load(src: &Sources<'_>) -> Result<PoolingSettings, ConfigError> {
        let defaults = pool_defaults(src)?;
        let redis = RedisSettings::load(src)?;
        Ok(PoolingSettings {
            enabled: src.get_bool(&keys::POOL_ENABLED, DEFAULT_POOL_ENABLED)?,
            pre_ping_window: Duration::from_secs(src.get(
                &keys::POOL_PRE_PING_WINDOW,
                DEFAULT_PRE_PING_WINDOW,
                "must be a whole number of seconds",
            )?),
            defaults,
            manager: ManagerSettings {
                cleanup_interval: src.get_secs(&keys::POOL_MANAGER_CLEANUP_INTERVAL, DEFAULT_CLEANUP_INTERVAL)?,
                reconcile_interval: src.get_secs(&keys::POOL_MANAGER_RECONCILE_INTERVAL, DEFAULT_RECONCILE_INTERVAL)?,
                warmup_interval: src.get_secs(&keys::POOL_MANAGER_WARMUP_INTERVAL, DEFAULT_WARMUP_INTERVAL)?,
                health_check_interval: src
                    .get_secs(&keys::POOL_MANAGER_HEALTH_CHECK_INTERVAL, DEFAULT_HEALTH_CHECK_INTERVAL)?,
                metrics_retention_days: src.get(
                    &keys::POOL_MANAGER_METRICS_RETENTION_DAYS,
                    DEFAULT_METRICS_RETENTION_DAYS,
                    "must be a whole number of days",
                )?,
            },
            audit: AuditSettings::load(src)?,
            redis,
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.manager.metrics_retention_days == 0 {
            return Err(ConfigError::invalid(
                keys::POOL_MANAGER_METRICS_RETENTION_DAYS.env,
                "must be at least 1 day",
            ));
        }
        self.audit.validate()?;
        self.redis.validate()
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        let d = &self.defaults;
        let m = &self.manager;
        out.extend([
            (keys::POOL_ENABLED.env, self.enabled.to_string()),
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
                keys::POOL_DEFAULT_MAX_SESSIONS_PER_USER.env,
                d.pool_max_sessions_per_user.to_string(),
            ),
            (
                keys::POOL_DEFAULT_MAX_INFLIGHT_PER_USER.env,
                d.pool_max_inflight_per_user.to_string(),
            ),
            (keys::POOL_DEFAULT_UNUSED_TTL.env, d.pool_unused_ttl.to_string()),
            (keys::RATE_LIMIT_PER_USER.env, d.pool_rate_limit.to_string()),
            (keys::RATE_LIMIT_BURST.env, d.pool_rate_burst.to_string()),
            (
                keys::POOL_PRE_PING_WINDOW.env,
                self.pre_ping_window.as_secs().to_string(),
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
                keys::POOL_MANAGER_RECONCILE_INTERVAL.env,
                m.reconcile_interval.as_secs().to_string(),
            ),
            (
                keys::POOL_MANAGER_WARMUP_INTERVAL.env,
                m.warmup_interval.as_secs().to_string(),
            ),
            (
                keys::POOL_MANAGER_METRICS_RETENTION_DAYS.env,
                m.metrics_retention_days.to_string(),
            ),
        ]);
        self.audit.summary(out);
        self.redis.summary(out);
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
    let quota = |key: &Key| {
        text(key).map(|v| {
            v.trim()
                .parse::<i64>()
                .map_or_else(|_| QuotaValue::Word(v.trim().to_owned()), QuotaValue::Number)
        })
    };
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
        pool_max_sessions_per_user: quota(&keys::POOL_DEFAULT_MAX_SESSIONS_PER_USER),
        pool_max_inflight_per_user: quota(&keys::POOL_DEFAULT_MAX_INFLIGHT_PER_USER),
        pool_unused_ttl: int(&keys::POOL_DEFAULT_UNUSED_TTL)?,
        pool_rate_limit: int(&keys::RATE_LIMIT_PER_USER)?,
        pool_rate_burst: int(&keys::RATE_LIMIT_BURST)?,
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
            "pool_max_sessions_per_user" => keys::POOL_DEFAULT_MAX_SESSIONS_PER_USER,
            "pool_max_inflight_per_user" => keys::POOL_DEFAULT_MAX_INFLIGHT_PER_USER,
            "pool_unused_ttl" => keys::POOL_DEFAULT_UNUSED_TTL,
            "pool_rate_limit" => keys::RATE_LIMIT_PER_USER,
            "pool_rate_burst" => keys::RATE_LIMIT_BURST,
            _ => keys::POOL_DEFAULT_IDLE_TTL,
        };
        let origin = src.raw(&key).map(|(_, o)| o).unwrap_or(Origin::Default);
        Sources::error(&key, &origin, e.rule)
    })
}
