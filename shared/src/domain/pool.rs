//! A pool's configuration: the seed's per-server fields (`pool_enabled` … `pool_pre_ping`) plus
//! poolgate's own (`pool_isolation`, `pool_session_capacity`, `pool_lease_ttl`, `pool_idle_ttl`).
//!
//! One validation path serves every entry point — the admin API, bulk updates and the
//! `POOL_DEFAULT_*` settings — so a value the API refuses can never arrive through the config file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Seed 001 defaults, kept so scripts written for the original gateway behave the same.
pub const DEFAULT_POOL_ENABLED: bool = false;
pub const DEFAULT_POOL_STRATEGY: Strategy = Strategy::RoundRobin;
pub const DEFAULT_POOL_MIN_SIZE: u32 = 1;
pub const DEFAULT_POOL_MAX_SIZE: u32 = 10;
/// Seconds an acquire waits for a release anywhere in the fleet before failing.
pub const DEFAULT_POOL_TIMEOUT: u32 = 30;
pub const DEFAULT_POOL_RECYCLE_SECONDS: u32 = 3600;
pub const DEFAULT_POOL_PRE_PING: bool = true;
/// Session isolation is the default: sharing an upstream session between users leaked state in
/// the gateway poolgate replaces (SPEC §3).
pub const DEFAULT_POOL_ISOLATION: Isolation = Isolation::Session;
pub const DEFAULT_POOL_SESSION_CAPACITY: u32 = 1;
/// Seconds a lease lives without renewal; long streams renew it, so this bounds only how long a
/// dead node's capacity stays taken (I4).
pub const DEFAULT_POOL_LEASE_TTL: u32 = 60;
/// Seconds a binding may stay unused before it ends and its upstream session is closed.
pub const DEFAULT_POOL_IDLE_TTL: u32 = 1800;

/// Seconds a client session bound at `initialize` may stay unused before it ends (it becomes used
/// with its first request after `initialize`; from then on `pool_idle_ttl` applies).
pub const DEFAULT_POOL_UNUSED_TTL: u32 = 60;
/// Requests per second per user and server; 0 = no rate limit (`RATE_LIMIT_PER_USER`).
pub const DEFAULT_POOL_RATE_LIMIT: u32 = 0;
/// Requests a user may send at once above the rate; 0 = one second's worth (`RATE_LIMIT_BURST`).
pub const DEFAULT_POOL_RATE_BURST: u32 = 0;
/// Highest rate limit accepted (requests per second).
pub const MAX_RATE: i64 = 1_000_000;

/// Upper bounds: far above any sane deployment, low enough that arithmetic on them (in Rust and
/// in Lua's doubles) can never overflow.
pub const MAX_POOL_SIZE: i64 = 10_000;
pub const MAX_SESSION_CAPACITY: i64 = 1_000;
pub const MAX_TIMEOUT_SECONDS: i64 = 3_600;
pub const MAX_TTL_SECONDS: i64 = 30 * 24 * 3_600;

/// How a pool chooses a slot (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    LeastConnections,
    Sticky,
    Weighted,
    None,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::RoundRobin,
        Strategy::LeastConnections,
        Strategy::Sticky,
        Strategy::Weighted,
        Strategy::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConnections => "least_connections",
            Strategy::Sticky => "sticky",
            Strategy::Weighted => "weighted",
            Strategy::None => "none",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("must be one of round_robin, least_connections, sticky, weighted, none (got {s:?})"))
    }
}

/// A per-user quota (`pool_max_sessions_per_user`, `pool_max_inflight_per_user`): `auto` — the
/// default — lets one user take at most half of the pool (rounded up), so one user can never
/// starve the others; a number sets the limit; `0` means unlimited. Quotas count authenticated
/// subjects only: without `AUTH_REQUIRED` every caller is `anonymous` and none applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quota {
    #[default]
    Auto,
    Limit(u32),
}

/// A quota as sent: a number or `"auto"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuotaValue {
    Number(i64),
    Word(String),
}

impl Quota {
    /// The limit that applies given the pool's fair share (half its capacity); 0 = unlimited.
    pub fn effective(self, capacity: u32) -> u32 {
        match self {
            Quota::Auto => capacity.div_ceil(2).max(1),
            Quota::Limit(n) => n,
        }
    }

    /// As stored in the database: -1 for `auto`.
    pub fn stored(self) -> i64 {
        match self {
            Quota::Auto => -1,
            Quota::Limit(n) => n.into(),
        }
    }

    pub fn from_stored(v: i64) -> Quota {
        u32::try_from(v).map_or(Quota::Auto, Quota::Limit)
    }

    fn parse(field: &str, v: &QuotaValue) -> Result<Quota, FieldError> {
        match v {
            QuotaValue::Word(w) if w == "auto" => Ok(Quota::Auto),
            QuotaValue::Word(w) => Err(FieldError::new(
                field,
                format!("must be \"auto\" or a whole number (got {w:?})"),
            )),
            QuotaValue::Number(n) => ranged(field, *n, 0, MAX_POOL_SIZE * MAX_SESSION_CAPACITY, "").map(Quota::Limit),
        }
    }

    fn value(self) -> QuotaValue {
        match self {
            Quota::Auto => QuotaValue::Word("auto".to_owned()),
            Quota::Limit(n) => QuotaValue::Number(n.into()),
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quota::Auto => f.write_str("auto"),
            Quota::Limit(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Quota {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = s
            .trim()
            .parse::<i64>()
            .map_or_else(|_| QuotaValue::Word(s.trim().to_owned()), QuotaValue::Number);
        Quota::parse("quota", &v).map_err(|e| e.rule)
    }
}

impl Serialize for Quota {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Quota::parse("quota", &QuotaValue::deserialize(d)?).map_err(|e| serde::de::Error::custom(e.rule))
    }
}

/// Whether an upstream session belongs to one downstream session or is shared (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    Session,
    Shared,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Session => "session",
            Isolation::Shared => "shared",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "session" => Ok(Isolation::Session),
            "shared" => Ok(Isolation::Shared),
            _ => Err(format!("must be one of session, shared (got {s:?})")),
        }
    }
}

/// A validated pool configuration. Only [`PoolConfig::apply`] and the defaults build one, so every
/// instance satisfies the SPEC §2 rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    pub pool_enabled: bool,
    pub pool_strategy: Strategy,
    pub pool_min_size: u32,
    pub pool_max_size: u32,
    pub pool_timeout: u32,
    pub pool_recycle_seconds: u32,
    pub pool_pre_ping: bool,
    pub pool_isolation: Isolation,
    pub pool_session_capacity: u32,
    pub pool_lease_ttl: u32,
    pub pool_idle_ttl: u32,
    /// Apply the optimizer's recommendation automatically (with hysteresis; audited).
    pub pool_auto_optimize: bool,
    /// Client sessions (bindings) one user may hold in this pool.
    pub pool_max_sessions_per_user: Quota,
    /// Requests one user may have in flight in this pool.
    pub pool_max_inflight_per_user: Quota,
    /// Seconds a client session may stay unused after `initialize`.
    pub pool_unused_ttl: u32,
    /// Requests per second per user (fleet-wide, GCRA); 0 = off.
    pub pool_rate_limit: u32,
    /// Burst above the rate; 0 = one second's worth.
    pub pool_rate_burst: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            pool_enabled: DEFAULT_POOL_ENABLED,
            pool_strategy: DEFAULT_POOL_STRATEGY,
            pool_min_size: DEFAULT_POOL_MIN_SIZE,
            pool_max_size: DEFAULT_POOL_MAX_SIZE,
            pool_timeout: DEFAULT_POOL_TIMEOUT,
            pool_recycle_seconds: DEFAULT_POOL_RECYCLE_SECONDS,
            pool_pre_ping: DEFAULT_POOL_PRE_PING,
            pool_isolation: DEFAULT_POOL_ISOLATION,
            pool_session_capacity: DEFAULT_POOL_SESSION_CAPACITY,
            pool_lease_ttl: DEFAULT_POOL_LEASE_TTL,
            pool_idle_ttl: DEFAULT_POOL_IDLE_TTL,
            pool_auto_optimize: false,
            pool_max_sessions_per_user: Quota::Auto,
            pool_max_inflight_per_user: Quota::Auto,
            pool_unused_ttl: DEFAULT_POOL_UNUSED_TTL,
            pool_rate_limit: DEFAULT_POOL_RATE_LIMIT,
            pool_rate_burst: DEFAULT_POOL_RATE_BURST,
        }
    }
}

impl PoolConfig {
    /// The session quota that applies (0 = unlimited).
    pub fn sessions_per_user(&self) -> u32 {
        self.pool_max_sessions_per_user.effective(self.pool_max_size)
    }

    /// The in-flight quota that applies (0 = unlimited).
    pub fn inflight_per_user(&self) -> u32 {
        self.pool_max_inflight_per_user
            .effective(self.pool_max_size.saturating_mul(self.pool_session_capacity))
    }

    /// The rate limit's burst that applies (requests accepted at once; 0 when there is no limit).
    pub fn rate_burst(&self) -> u32 {
        if self.pool_rate_limit == 0 {
            0
        } else if self.pool_rate_burst == 0 {
            self.pool_rate_limit
        } else {
            self.pool_rate_burst
        }
    }
}

/// A refused value: the field it came in and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Deserializes a field that is optional to send but must not be `null` when sent: an explicit
/// `null` for a setting is a mistake to report, not a request to leave it alone.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A partial update, as the admin API and bulk-update receive it. Numbers are `i64` so that a
/// negative or huge value is refused with its rule rather than a type error. The seed's short
/// names (`max_size`, …) are accepted as aliases: its troubleshooting guide sends them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfigPatch {
    #[serde(
        default,
        deserialize_with = "present",
        alias = "enabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_enabled: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "strategy",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_strategy: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "min_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_min_size: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "max_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_max_size: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_timeout: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "recycle_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_recycle_seconds: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "pre_ping",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_pre_ping: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "isolation",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_isolation: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "session_capacity",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_session_capacity: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "lease_ttl",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_lease_ttl: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "idle_ttl",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_idle_ttl: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "auto_optimize",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_auto_optimize: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "max_sessions_per_user",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_max_sessions_per_user: Option<QuotaValue>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "max_inflight_per_user",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_max_inflight_per_user: Option<QuotaValue>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "unused_ttl",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_unused_ttl: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "rate_limit",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_rate_limit: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        alias = "rate_burst",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_rate_burst: Option<i64>,
}

/// Every JSON key a [`PoolConfigPatch`] accepts (names and aliases): bodies that mix server and
/// pool fields are split on this list rather than with `#[serde(flatten)]`, which would lose
/// `deny_unknown_fields` and the path of a bad value.
/// Pool fields that follow `POOL_DEFAULT_*` while a server never set them explicitly.
pub const DEFAULTED_FIELDS: [&str; 15] = [
    "pool_strategy",
    "pool_min_size",
    "pool_max_size",
    "pool_timeout",
    "pool_recycle_seconds",
    "pool_pre_ping",
    "pool_isolation",
    "pool_session_capacity",
    "pool_lease_ttl",
    "pool_idle_ttl",
    "pool_max_sessions_per_user",
    "pool_max_inflight_per_user",
    "pool_unused_ttl",
    "pool_rate_limit",
    "pool_rate_burst",
];

impl PoolConfigPatch {
    /// The [`DEFAULTED_FIELDS`] this patch sets.
    pub fn sets(&self) -> Vec<&'static str> {
        let set = [
            self.pool_strategy.is_some(),
            self.pool_min_size.is_some(),
            self.pool_max_size.is_some(),
            self.pool_timeout.is_some(),
            self.pool_recycle_seconds.is_some(),
            self.pool_pre_ping.is_some(),
            self.pool_isolation.is_some(),
            self.pool_session_capacity.is_some(),
            self.pool_lease_ttl.is_some(),
            self.pool_idle_ttl.is_some(),
            self.pool_max_sessions_per_user.is_some(),
            self.pool_max_inflight_per_user.is_some(),
            self.pool_unused_ttl.is_some(),
            self.pool_rate_limit.is_some(),
            self.pool_rate_burst.is_some(),
        ];
        DEFAULTED_FIELDS
            .into_iter()
            .zip(set)
            .filter_map(|(f, s)| s.then_some(f))
            .collect()
    }
}

pub const PATCH_FIELDS: &[&str] = &[
    "pool_enabled",
    "enabled",
    "pool_strategy",
    "strategy",
    "pool_min_size",
    "min_size",
    "pool_max_size",
    "max_size",
    "pool_timeout",
    "timeout",
    "pool_recycle_seconds",
    "recycle_seconds",
    "pool_pre_ping",
    "pre_ping",
    "pool_isolation",
    "isolation",
    "pool_session_capacity",
    "session_capacity",
    "pool_lease_ttl",
    "lease_ttl",
    "pool_idle_ttl",
    "idle_ttl",
    "pool_auto_optimize",
    "auto_optimize",
    "pool_max_sessions_per_user",
    "max_sessions_per_user",
    "pool_max_inflight_per_user",
    "max_inflight_per_user",
    "pool_unused_ttl",
    "unused_ttl",
    "pool_rate_limit",
    "rate_limit",
    "pool_rate_burst",
    "rate_burst",
];

impl PoolConfigPatch {
    pub fn is_empty(&self) -> bool {
        self == &PoolConfigPatch::default()
    }
}

fn ranged(field: &str, value: i64, min: i64, max: i64, unit: &str) -> Result<u32, FieldError> {
    if value < min || value > max {
        return Err(FieldError::new(
            field,
            format!("must be between {min} and {max}{unit} (got {value})"),
        ));
    }
    u32::try_from(value).map_err(|_| FieldError::new(field, format!("out of range (got {value})")))
}

impl PoolConfig {
    /// Applies `patch` to a copy of `self`, checking each field's range and then the rules that
    /// join fields. Nothing is applied unless everything holds.
    pub fn apply(&self, patch: &PoolConfigPatch) -> Result<PoolConfig, FieldError> {
        let mut next = *self;
        if let Some(v) = patch.pool_enabled {
            next.pool_enabled = v;
        }
        if let Some(v) = &patch.pool_strategy {
            next.pool_strategy = v.parse().map_err(|rule| FieldError::new("pool_strategy", rule))?;
        }
        if let Some(v) = patch.pool_min_size {
            next.pool_min_size = ranged("pool_min_size", v, 0, MAX_POOL_SIZE, "")?;
        }
        if let Some(v) = patch.pool_max_size {
            next.pool_max_size = ranged("pool_max_size", v, 1, MAX_POOL_SIZE, "")?;
        }
        if let Some(v) = patch.pool_timeout {
            next.pool_timeout = ranged("pool_timeout", v, 1, MAX_TIMEOUT_SECONDS, " seconds")?;
        }
        if let Some(v) = patch.pool_recycle_seconds {
            next.pool_recycle_seconds = ranged("pool_recycle_seconds", v, 1, MAX_TTL_SECONDS, " seconds")?;
        }
        if let Some(v) = patch.pool_pre_ping {
            next.pool_pre_ping = v;
        }
        if let Some(v) = &patch.pool_isolation {
            next.pool_isolation = v.parse().map_err(|rule| FieldError::new("pool_isolation", rule))?;
        }
        if let Some(v) = patch.pool_session_capacity {
            next.pool_session_capacity = ranged("pool_session_capacity", v, 1, MAX_SESSION_CAPACITY, "")?;
        }
        if let Some(v) = patch.pool_lease_ttl {
            next.pool_lease_ttl = ranged("pool_lease_ttl", v, 1, MAX_TTL_SECONDS, " seconds")?;
        }
        if let Some(v) = patch.pool_idle_ttl {
            next.pool_idle_ttl = ranged("pool_idle_ttl", v, 1, MAX_TTL_SECONDS, " seconds")?;
        }
        if let Some(v) = patch.pool_auto_optimize {
            next.pool_auto_optimize = v;
        }
        if let Some(v) = &patch.pool_max_sessions_per_user {
            next.pool_max_sessions_per_user = Quota::parse("pool_max_sessions_per_user", v)?;
        }
        if let Some(v) = &patch.pool_max_inflight_per_user {
            next.pool_max_inflight_per_user = Quota::parse("pool_max_inflight_per_user", v)?;
        }
        if let Some(v) = patch.pool_unused_ttl {
            next.pool_unused_ttl = ranged("pool_unused_ttl", v, 1, MAX_TTL_SECONDS, " seconds")?;
        }
        if let Some(v) = patch.pool_rate_limit {
            next.pool_rate_limit = ranged("pool_rate_limit", v, 0, MAX_RATE, " requests per second")?;
        }
        if let Some(v) = patch.pool_rate_burst {
            next.pool_rate_burst = ranged("pool_rate_burst", v, 0, MAX_RATE, " requests")?;
        }
        if next.pool_min_size > next.pool_max_size {
            // Name the field the caller touched, so the error points at what they sent.
            let field = if patch.pool_min_size.is_some() || patch.pool_max_size.is_none() {
                "pool_min_size"
            } else {
                "pool_max_size"
            };
            return Err(FieldError::new(
                field,
                format!(
                    "pool_min_size must be <= pool_max_size (got {} > {})",
                    next.pool_min_size, next.pool_max_size
                ),
            ));
        }
        Ok(next)
    }

    /// The patch that would turn the defaults into `self`: the seed's backup export shape.
    /// The field `name` (one of [`DEFAULTED_FIELDS`]) as text, as the store records it.
    pub fn field_text(&self, name: &str) -> Option<String> {
        Some(match name {
            "pool_strategy" => self.pool_strategy.as_str().to_owned(),
            "pool_min_size" => self.pool_min_size.to_string(),
            "pool_max_size" => self.pool_max_size.to_string(),
            "pool_timeout" => self.pool_timeout.to_string(),
            "pool_recycle_seconds" => self.pool_recycle_seconds.to_string(),
            "pool_pre_ping" => self.pool_pre_ping.to_string(),
            "pool_isolation" => self.pool_isolation.as_str().to_owned(),
            "pool_session_capacity" => self.pool_session_capacity.to_string(),
            "pool_lease_ttl" => self.pool_lease_ttl.to_string(),
            "pool_idle_ttl" => self.pool_idle_ttl.to_string(),
            "pool_max_sessions_per_user" => self.pool_max_sessions_per_user.to_string(),
            "pool_max_inflight_per_user" => self.pool_max_inflight_per_user.to_string(),
            "pool_unused_ttl" => self.pool_unused_ttl.to_string(),
            "pool_rate_limit" => self.pool_rate_limit.to_string(),
            "pool_rate_burst" => self.pool_rate_burst.to_string(),
            _ => return None,
        })
    }

    /// This configuration with the fields in `follow` taken from `defaults` (`POOL_DEFAULT_*`).
    /// A default `pool_max_size` below an explicit `pool_min_size` caps the minimum too, so the
    /// result still satisfies the rules.
    pub fn following(&self, defaults: &PoolConfig, follow: &std::collections::BTreeSet<String>) -> PoolConfig {
        let mut next = *self;
        for f in follow {
            match f.as_str() {
                "pool_strategy" => next.pool_strategy = defaults.pool_strategy,
                "pool_min_size" => next.pool_min_size = defaults.pool_min_size,
                "pool_max_size" => next.pool_max_size = defaults.pool_max_size,
                "pool_timeout" => next.pool_timeout = defaults.pool_timeout,
                "pool_recycle_seconds" => next.pool_recycle_seconds = defaults.pool_recycle_seconds,
                "pool_pre_ping" => next.pool_pre_ping = defaults.pool_pre_ping,
                "pool_isolation" => next.pool_isolation = defaults.pool_isolation,
                "pool_session_capacity" => next.pool_session_capacity = defaults.pool_session_capacity,
                "pool_lease_ttl" => next.pool_lease_ttl = defaults.pool_lease_ttl,
                "pool_idle_ttl" => next.pool_idle_ttl = defaults.pool_idle_ttl,
                "pool_max_sessions_per_user" => next.pool_max_sessions_per_user = defaults.pool_max_sessions_per_user,
                "pool_max_inflight_per_user" => next.pool_max_inflight_per_user = defaults.pool_max_inflight_per_user,
                "pool_unused_ttl" => next.pool_unused_ttl = defaults.pool_unused_ttl,
                "pool_rate_limit" => next.pool_rate_limit = defaults.pool_rate_limit,
                "pool_rate_burst" => next.pool_rate_burst = defaults.pool_rate_burst,
                _ => {}
            }
        }
        next.pool_min_size = next.pool_min_size.min(next.pool_max_size);
        next
    }

    pub fn to_patch(&self) -> PoolConfigPatch {
        PoolConfigPatch {
            pool_enabled: Some(self.pool_enabled),
            pool_strategy: Some(self.pool_strategy.as_str().to_owned()),
            pool_min_size: Some(self.pool_min_size.into()),
            pool_max_size: Some(self.pool_max_size.into()),
            pool_timeout: Some(self.pool_timeout.into()),
            pool_recycle_seconds: Some(self.pool_recycle_seconds.into()),
            pool_pre_ping: Some(self.pool_pre_ping),
            pool_isolation: Some(self.pool_isolation.as_str().to_owned()),
            pool_session_capacity: Some(self.pool_session_capacity.into()),
            pool_lease_ttl: Some(self.pool_lease_ttl.into()),
            pool_idle_ttl: Some(self.pool_idle_ttl.into()),
            pool_auto_optimize: Some(self.pool_auto_optimize),
            pool_max_sessions_per_user: Some(self.pool_max_sessions_per_user.value()),
            pool_max_inflight_per_user: Some(self.pool_max_inflight_per_user.value()),
            pool_unused_ttl: Some(self.pool_unused_ttl.into()),
            pool_rate_limit: Some(self.pool_rate_limit.into()),
            pool_rate_burst: Some(self.pool_rate_burst.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn defaults_match_the_seed() {
        let d = PoolConfig::default();
        assert!(!d.pool_enabled);
        assert_eq!(d.pool_strategy, Strategy::RoundRobin);
        assert_eq!((d.pool_min_size, d.pool_max_size), (1, 10));
        assert_eq!((d.pool_timeout, d.pool_recycle_seconds), (30, 3600));
        assert!(d.pool_pre_ping);
        assert_eq!(d.pool_isolation, Isolation::Session);
        assert_eq!(d.pool_session_capacity, 1);
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let base = PoolConfig::default();
        let cases: Vec<(PoolConfigPatch, &str)> = vec![
            (
                PoolConfigPatch {
                    pool_strategy: Some("fastest".into()),
                    ..Default::default()
                },
                "pool_strategy",
            ),
            (
                PoolConfigPatch {
                    pool_min_size: Some(-1),
                    ..Default::default()
                },
                "pool_min_size",
            ),
            (
                PoolConfigPatch {
                    pool_min_size: Some(11),
                    ..Default::default()
                },
                "pool_min_size",
            ),
            (
                PoolConfigPatch {
                    pool_max_size: Some(0),
                    ..Default::default()
                },
                "pool_max_size",
            ),
            (
                PoolConfigPatch {
                    pool_timeout: Some(0),
                    ..Default::default()
                },
                "pool_timeout",
            ),
            (
                PoolConfigPatch {
                    pool_recycle_seconds: Some(0),
                    ..Default::default()
                },
                "pool_recycle_seconds",
            ),
            (
                PoolConfigPatch {
                    pool_isolation: Some("none".into()),
                    ..Default::default()
                },
                "pool_isolation",
            ),
            (
                PoolConfigPatch {
                    pool_session_capacity: Some(0),
                    ..Default::default()
                },
                "pool_session_capacity",
            ),
            (
                PoolConfigPatch {
                    pool_lease_ttl: Some(-5),
                    ..Default::default()
                },
                "pool_lease_ttl",
            ),
            (
                PoolConfigPatch {
                    pool_idle_ttl: Some(0),
                    ..Default::default()
                },
                "pool_idle_ttl",
            ),
        ];
        for (patch, field) in cases {
            let err = base.apply(&patch).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn quotas_are_auto_a_number_or_unlimited() {
        let d = PoolConfig::default();
        // auto: half the pool, rounded up (10 slots × capacity 1).
        assert_eq!((d.sessions_per_user(), d.inflight_per_user()), (5, 5));
        let set = |v: Value| {
            serde_json::from_value::<PoolConfigPatch>(json!({ "pool_max_sessions_per_user": v }))
                .map_err(|e| e.to_string())
                .and_then(|p| d.apply(&p).map_err(|e| e.to_string()))
        };
        assert_eq!(set(json!(0)).expect("0").sessions_per_user(), 0, "0 = unlimited");
        assert_eq!(set(json!(3)).expect("3").sessions_per_user(), 3);
        assert_eq!(
            set(json!("auto")).expect("auto").pool_max_sessions_per_user,
            Quota::Auto
        );
        let err = set(json!("many")).expect_err("a word other than auto");
        assert!(
            err.contains("pool_max_sessions_per_user") && err.contains("auto"),
            "{err}"
        );
        let err = set(json!(-1)).expect_err("negative");
        assert!(err.contains("pool_max_sessions_per_user"), "{err}");
        // Stored as -1 for auto, read back the same.
        for q in [Quota::Auto, Quota::Limit(0), Quota::Limit(7)] {
            assert_eq!(Quota::from_stored(q.stored()), q);
        }
        let shown = serde_json::to_value(d).expect("serializes");
        assert_eq!(shown["pool_max_inflight_per_user"], "auto");
    }

    #[test]
    fn the_rate_burst_defaults_to_one_seconds_worth() {
        let d = PoolConfig::default();
        assert_eq!(d.rate_burst(), 0, "no limit, no burst");
        let p = PoolConfigPatch {
            pool_rate_limit: Some(20),
            ..Default::default()
        };
        assert_eq!(d.apply(&p).expect("rate").rate_burst(), 20);
        let p = PoolConfigPatch {
            pool_rate_limit: Some(20),
            pool_rate_burst: Some(3),
            ..Default::default()
        };
        assert_eq!(d.apply(&p).expect("rate").rate_burst(), 3);
        let p = PoolConfigPatch {
            pool_rate_limit: Some(MAX_RATE + 1),
            ..Default::default()
        };
        assert_eq!(d.apply(&p).expect_err("too high").field, "pool_rate_limit");
    }

    #[test]
    fn min_above_max_names_the_field_that_was_sent() {
        let base = PoolConfig::default();
        let err = base
            .apply(&PoolConfigPatch {
                pool_max_size: Some(0),
                ..Default::default()
            })
            .expect_err("max 0");
        assert_eq!(err.field, "pool_max_size");
        let shrunk = base
            .apply(&PoolConfigPatch {
                pool_min_size: Some(5),
                ..Default::default()
            })
            .expect("min 5 <= max 10");
        let err = shrunk
            .apply(&PoolConfigPatch {
                pool_max_size: Some(3),
                ..Default::default()
            })
            .expect_err("max below min");
        assert_eq!(err.field, "pool_max_size");
        assert!(
            err.rule.contains("pool_min_size must be <= pool_max_size"),
            "{}",
            err.rule
        );
    }

    #[test]
    fn patch_round_trips_through_the_export_shape() {
        let cfg = PoolConfig::default()
            .apply(&PoolConfigPatch {
                pool_enabled: Some(true),
                pool_strategy: Some("sticky".into()),
                pool_max_size: Some(20),
                ..Default::default()
            })
            .expect("valid");
        assert_eq!(PoolConfig::default().apply(&cfg.to_patch()), Ok(cfg));
    }

    #[test]
    fn seed_short_names_are_aliases() {
        let p: PoolConfigPatch = serde_json::from_str(r#"{"max_size": 20}"#).expect("alias");
        assert_eq!(p.pool_max_size, Some(20));
        assert!(serde_json::from_str::<PoolConfigPatch>(r#"{"max_sizes": 20}"#).is_err());
    }

    #[test]
    fn patch_fields_lists_every_accepted_key() {
        for key in PATCH_FIELDS {
            let value = if key.ends_with("enabled") || key.ends_with("pre_ping") || key.ends_with("auto_optimize") {
                serde_json::json!(true)
            } else if key.ends_with("strategy") || key.ends_with("isolation") {
                serde_json::json!("x")
            } else {
                serde_json::json!(1)
            };
            let body = serde_json::json!({ *key: value });
            let patch: PoolConfigPatch = serde_json::from_value(body).expect(key);
            assert!(!patch.is_empty(), "{key}");
        }
        assert_eq!(PATCH_FIELDS.len(), 34);
    }
}
