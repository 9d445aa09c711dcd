//! Every setting poolgate reads: its environment variable (seed name), accepted aliases, and its
//! place in `config.yaml` (seed 000 layout). Loading, precedence and error messages are all driven
//! from this one table, so a key cannot be documented in one place and read under another name.

/// One setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// Environment variable; the name error messages use.
    pub env: &'static str,
    /// Other environment variables accepted for it (seed 001's short names).
    pub aliases: &'static [&'static str],
    /// Dotted path in `config.yaml`.
    pub path: &'static str,
    /// Logged as `[redacted]`.
    pub secret: bool,
}

const fn key(env: &'static str, path: &'static str) -> Key {
    Key {
        env,
        aliases: &[],
        path,
        secret: false,
    }
}

pub const HOST: Key = key("HOST", "server.host");
pub const PORT: Key = key("PORT", "server.port");
pub const LOG_LEVEL: Key = key("LOG_LEVEL", "server.log_level");
/// Where `poolgate-coordinator` serves `/health`, `/ready` and `/metrics` (on HOST).
pub const COORDINATOR_PORT: Key = key("COORDINATOR_PORT", "server.coordinator_port");
/// Seconds a stopping node lets in-flight requests finish.
pub const SHUTDOWN_GRACE_SECONDS: Key = key("SHUTDOWN_GRACE_SECONDS", "server.shutdown_grace_seconds");
/// Largest admin API request body in bytes.
pub const ADMIN_BODY_LIMIT: Key = key("ADMIN_BODY_LIMIT", "server.admin_body_limit");
/// Browser origins allowed on the MCP endpoint (comma-separated `scheme://host[:port]`, or `*`);
/// unset: only the origin of the host the request was sent to (DNS rebinding protection).
pub const ALLOWED_ORIGINS: Key = key("ALLOWED_ORIGINS", "server.allowed_origins");
/// Seconds a new connection has to deliver its first complete request head (slow-header clients).
pub const SERVER_HEADER_READ_TIMEOUT: Key = key("SERVER_HEADER_READ_TIMEOUT", "server.header_read_timeout");
/// Seconds a request's whole body may take to arrive, from its head (slow-body clients).
pub const SERVER_BODY_READ_TIMEOUT: Key = key("SERVER_BODY_READ_TIMEOUT", "server.body_read_timeout");
/// Seconds a keep-alive connection may wait for its next complete request head after an answer.
pub const SERVER_KEEPALIVE_TIMEOUT: Key = key("SERVER_KEEPALIVE_TIMEOUT", "server.keepalive_timeout");
/// Requests one node serves at once (probes excluded); the excess gets 503 at once. 0: no cap.
pub const SERVER_MAX_CONCURRENT_REQUESTS: Key = key("SERVER_MAX_CONCURRENT_REQUESTS", "server.max_concurrent_requests");
/// Open connections one client IP may hold on one node (seed 002's `max_connections_per_ip`). 0: off.
pub const SERVER_MAX_CONNECTIONS_PER_IP: Key = key("SERVER_MAX_CONNECTIONS_PER_IP", "server.max_connections_per_ip");

pub const DATABASE_URL: Key = Key {
    env: "DATABASE_URL",
    aliases: &[],
    path: "database.url",
    secret: true,
};
pub const DB_POOL_SIZE: Key = key("DB_POOL_SIZE", "database.pool_size");
pub const DB_MAX_OVERFLOW: Key = key("DB_MAX_OVERFLOW", "database.max_overflow");
pub const DB_POOL_TIMEOUT: Key = key("DB_POOL_TIMEOUT", "database.pool_timeout");
pub const DB_POOL_RECYCLE: Key = key("DB_POOL_RECYCLE", "database.pool_recycle");

pub const AUTH_REQUIRED: Key = key("AUTH_REQUIRED", "auth.required");
pub const JWT_SECRET_KEY: Key = Key {
    env: "JWT_SECRET_KEY",
    aliases: &[],
    path: "auth.jwt_secret_key",
    secret: true,
};
/// Tokens on the admin API (seed 000); unset: as `AUTH_REQUIRED`.
pub const POOL_ADMIN_AUTH_REQUIRED: Key = key("POOL_ADMIN_AUTH_REQUIRED", "auth.admin_auth_required");
/// `AUTH_REQUIRED=false` on a HOST that is not loopback is refused unless this is true.
pub const ALLOW_INSECURE_AUTH_OFF: Key = key("ALLOW_INSECURE_AUTH_OFF", "auth.allow_insecure_auth_off");
/// `/metrics` needs a bearer token too.
pub const METRICS_AUTH_REQUIRED: Key = key("METRICS_AUTH_REQUIRED", "auth.metrics_auth_required");
pub const POOL_ADMIN_ROLES: Key = key("POOL_ADMIN_ROLES", "auth.admin_roles");
/// When set, bearer tokens must carry this `iss`.
pub const JWT_ISSUER: Key = key("JWT_ISSUER", "auth.jwt_issuer");
/// When set, bearer tokens' `aud` must name this.
pub const JWT_AUDIENCE: Key = key("JWT_AUDIENCE", "auth.jwt_audience");
/// How long a client session id is accepted after it was issued (seconds).
pub const SESSION_MAX_AGE: Key = key("SESSION_MAX_AGE", "auth.session_max_age");
/// Former `JWT_SECRET_KEY`s whose bearer tokens still verify (key rotation), comma-separated.
pub const JWT_SECRET_KEY_FALLBACKS: Key = Key {
    env: "JWT_SECRET_KEY_FALLBACKS",
    aliases: &[],
    path: "auth.jwt_secret_key_fallbacks",
    secret: true,
};
/// Former secrets still accepted for client session ids (key rotation), comma-separated.
pub const SESSION_SECRET_FALLBACKS: Key = Key {
    env: "SESSION_SECRET_FALLBACKS",
    aliases: &[],
    path: "auth.session_secret_fallbacks",
    secret: true,
};

pub const POOL_ENABLED: Key = key("POOL_ENABLED", "pooling.enabled");
pub const POOL_DEFAULT_STRATEGY: Key = Key {
    env: "POOL_DEFAULT_STRATEGY",
    aliases: &["POOL_STRATEGY"],
    path: "pooling.defaults.strategy",
    secret: false,
};
pub const POOL_DEFAULT_MIN_SIZE: Key = Key {
    env: "POOL_DEFAULT_MIN_SIZE",
    aliases: &["POOL_MIN_SIZE"],
    path: "pooling.defaults.min_size",
    secret: false,
};
pub const POOL_DEFAULT_MAX_SIZE: Key = Key {
    env: "POOL_DEFAULT_MAX_SIZE",
    aliases: &["POOL_MAX_SIZE"],
    path: "pooling.defaults.max_size",
    secret: false,
};
pub const POOL_DEFAULT_TIMEOUT: Key = Key {
    env: "POOL_DEFAULT_TIMEOUT",
    aliases: &["POOL_TIMEOUT"],
    path: "pooling.defaults.timeout",
    secret: false,
};
pub const POOL_DEFAULT_RECYCLE_SECONDS: Key = Key {
    env: "POOL_DEFAULT_RECYCLE_SECONDS",
    aliases: &["POOL_RECYCLE_SECONDS"],
    path: "pooling.defaults.recycle_seconds",
    secret: false,
};
pub const POOL_DEFAULT_PRE_PING: Key = Key {
    env: "POOL_DEFAULT_PRE_PING",
    aliases: &["POOL_PRE_PING"],
    path: "pooling.defaults.pre_ping",
    secret: false,
};
pub const POOL_DEFAULT_ISOLATION: Key = Key {
    env: "POOL_DEFAULT_ISOLATION",
    aliases: &["POOL_ISOLATION"],
    path: "pooling.defaults.isolation",
    secret: false,
};
pub const POOL_DEFAULT_SESSION_CAPACITY: Key = Key {
    env: "POOL_DEFAULT_SESSION_CAPACITY",
    aliases: &["POOL_SESSION_CAPACITY"],
    path: "pooling.defaults.session_capacity",
    secret: false,
};
pub const POOL_DEFAULT_LEASE_TTL: Key = Key {
    env: "POOL_DEFAULT_LEASE_TTL",
    aliases: &["POOL_LEASE_TTL"],
    path: "pooling.defaults.lease_ttl",
    secret: false,
};
pub const POOL_DEFAULT_IDLE_TTL: Key = Key {
    env: "POOL_DEFAULT_IDLE_TTL",
    aliases: &["POOL_IDLE_TTL"],
    path: "pooling.defaults.idle_ttl",
    secret: false,
};
pub const POOL_DEFAULT_MAX_SESSIONS_PER_USER: Key = key(
    "POOL_DEFAULT_MAX_SESSIONS_PER_USER",
    "pooling.defaults.max_sessions_per_user",
);
pub const POOL_DEFAULT_MAX_INFLIGHT_PER_USER: Key = key(
    "POOL_DEFAULT_MAX_INFLIGHT_PER_USER",
    "pooling.defaults.max_inflight_per_user",
);
pub const POOL_DEFAULT_UNUSED_TTL: Key = key("POOL_DEFAULT_UNUSED_TTL", "pooling.defaults.unused_ttl");
/// Requests per second per user and server, fleet-wide (a server's `pool_rate_limit` overrides).
pub const RATE_LIMIT_PER_USER: Key = key("RATE_LIMIT_PER_USER", "pooling.defaults.rate_limit");
pub const RATE_LIMIT_BURST: Key = key("RATE_LIMIT_BURST", "pooling.defaults.rate_burst");

/// Seconds after its creation during which a warm upstream session skips the pre-ping.
pub const POOL_PRE_PING_WINDOW: Key = key("POOL_PRE_PING_WINDOW", "pooling.pre_ping_window");
pub const POOL_MANAGER_CLEANUP_INTERVAL: Key = key("POOL_MANAGER_CLEANUP_INTERVAL", "pooling.manager.cleanup_interval");
pub const POOL_MANAGER_HEALTH_CHECK_INTERVAL: Key = key(
    "POOL_MANAGER_HEALTH_CHECK_INTERVAL",
    "pooling.manager.health_check_interval",
);
pub const POOL_MANAGER_RECONCILE_INTERVAL: Key =
    key("POOL_MANAGER_RECONCILE_INTERVAL", "pooling.manager.reconcile_interval");
pub const POOL_MANAGER_WARMUP_INTERVAL: Key = key("POOL_MANAGER_WARMUP_INTERVAL", "pooling.manager.warmup_interval");
pub const POOL_MANAGER_METRICS_RETENTION_DAYS: Key = key(
    "POOL_MANAGER_METRICS_RETENTION_DAYS",
    "pooling.manager.metrics_retention_days",
);
/// Append every committed admin change to `POOL_AUDIT_LOG_PATH` (seed 000), one JSON line each.
pub const POOL_AUDIT_ENABLED: Key = key("POOL_AUDIT_ENABLED", "pooling.audit.enabled");
/// The audit file; reopened on SIGHUP and when it was rotated away.
pub const POOL_AUDIT_LOG_PATH: Key = key("POOL_AUDIT_LOG_PATH", "pooling.audit.log_path");

pub const REDIS_ENABLED: Key = key("REDIS_ENABLED", "pooling.redis.enabled");
pub const REDIS_URL: Key = Key {
    env: "REDIS_URL",
    aliases: &[],
    path: "pooling.redis.url",
    secret: true,
};
pub const REDIS_POOL_PREFIX: Key = key("REDIS_POOL_PREFIX", "pooling.redis.prefix");
pub const REDIS_LEADER_TTL: Key = key("REDIS_LEADER_TTL", "pooling.redis.leader_ttl");
pub const REDIS_LEADER_HEARTBEAT_INTERVAL: Key = key(
    "REDIS_LEADER_HEARTBEAT_INTERVAL",
    "pooling.redis.leader_heartbeat_interval",
);
pub const REDIS_LEADER_RENEW_DEADLINE: Key = key("REDIS_LEADER_RENEW_DEADLINE", "pooling.redis.leader_renew_deadline");
pub const REDIS_POOL_SIZE: Key = key("REDIS_POOL_SIZE", "pooling.redis.pool_size");
pub const REDIS_POOL_TIMEOUT: Key = key("REDIS_POOL_TIMEOUT", "pooling.redis.pool_timeout");
pub const REDIS_SOCKET_KEEPALIVE: Key = key("REDIS_SOCKET_KEEPALIVE", "pooling.redis.socket_keepalive");

pub const UPSTREAM_MAX_RESPONSE_BYTES: Key = key("UPSTREAM_MAX_RESPONSE_BYTES", "upstream.max_response_bytes");
pub const UPSTREAM_MAX_EVENT_BYTES: Key = key("UPSTREAM_MAX_EVENT_BYTES", "upstream.max_event_bytes");
pub const UPSTREAM_REQUEST_TIMEOUT: Key = key("UPSTREAM_REQUEST_TIMEOUT", "upstream.request_timeout");
pub const UPSTREAM_BREAKER_THRESHOLD: Key = key("UPSTREAM_BREAKER_THRESHOLD", "upstream.breaker_threshold");
pub const UPSTREAM_BREAKER_OPEN_SECONDS: Key = key("UPSTREAM_BREAKER_OPEN_SECONDS", "upstream.breaker_open_seconds");
/// Apply the `POOL_TLS_*` paths to upstream HTTPS (seed 000's "TLS Configuration").
pub const POOL_TLS_ENABLED: Key = key("POOL_TLS_ENABLED", "upstream.tls.enabled");
/// Client certificate chain (PEM) presented to upstreams (mTLS); needs `POOL_TLS_KEY_PATH`.
pub const POOL_TLS_CERT_PATH: Key = key("POOL_TLS_CERT_PATH", "upstream.tls.cert_path");
/// The client certificate's private key (PEM).
pub const POOL_TLS_KEY_PATH: Key = key("POOL_TLS_KEY_PATH", "upstream.tls.key_path");
/// PEM bundle of CA certificates trusted for upstream HTTPS in addition to the web roots.
pub const POOL_TLS_CA_PATH: Key = key("POOL_TLS_CA_PATH", "upstream.tls.ca_path");

/// All keys, in the order the effective configuration is logged and documented.
pub const ALL: &[Key] = &[
    HOST,
    PORT,
    COORDINATOR_PORT,
    LOG_LEVEL,
    SHUTDOWN_GRACE_SECONDS,
    ADMIN_BODY_LIMIT,
    ALLOWED_ORIGINS,
    SERVER_HEADER_READ_TIMEOUT,
    SERVER_BODY_READ_TIMEOUT,
    SERVER_KEEPALIVE_TIMEOUT,
    SERVER_MAX_CONCURRENT_REQUESTS,
    SERVER_MAX_CONNECTIONS_PER_IP,
    DATABASE_URL,
    DB_POOL_SIZE,
    DB_MAX_OVERFLOW,
    DB_POOL_TIMEOUT,
    DB_POOL_RECYCLE,
    AUTH_REQUIRED,
    POOL_ADMIN_AUTH_REQUIRED,
    ALLOW_INSECURE_AUTH_OFF,
    METRICS_AUTH_REQUIRED,
    JWT_SECRET_KEY,
    POOL_ADMIN_ROLES,
    JWT_ISSUER,
    JWT_AUDIENCE,
    SESSION_MAX_AGE,
    SESSION_SECRET_FALLBACKS,
    JWT_SECRET_KEY_FALLBACKS,
    POOL_ENABLED,
    POOL_DEFAULT_STRATEGY,
    POOL_DEFAULT_MIN_SIZE,
    POOL_DEFAULT_MAX_SIZE,
    POOL_DEFAULT_TIMEOUT,
    POOL_DEFAULT_RECYCLE_SECONDS,
    POOL_DEFAULT_PRE_PING,
    POOL_DEFAULT_ISOLATION,
    POOL_DEFAULT_SESSION_CAPACITY,
    POOL_DEFAULT_LEASE_TTL,
    POOL_DEFAULT_IDLE_TTL,
    POOL_DEFAULT_MAX_SESSIONS_PER_USER,
    POOL_DEFAULT_MAX_INFLIGHT_PER_USER,
    POOL_DEFAULT_UNUSED_TTL,
    RATE_LIMIT_PER_USER,
    RATE_LIMIT_BURST,
    POOL_PRE_PING_WINDOW,
    POOL_MANAGER_CLEANUP_INTERVAL,
    POOL_MANAGER_HEALTH_CHECK_INTERVAL,
    POOL_MANAGER_RECONCILE_INTERVAL,
    POOL_MANAGER_WARMUP_INTERVAL,
    POOL_MANAGER_METRICS_RETENTION_DAYS,
    POOL_AUDIT_ENABLED,
    POOL_AUDIT_LOG_PATH,
    REDIS_ENABLED,
    REDIS_URL,
    REDIS_POOL_PREFIX,
    REDIS_LEADER_TTL,
    REDIS_LEADER_HEARTBEAT_INTERVAL,
    REDIS_LEADER_RENEW_DEADLINE,
    REDIS_POOL_SIZE,
    REDIS_POOL_TIMEOUT,
    REDIS_SOCKET_KEEPALIVE,
    UPSTREAM_MAX_RESPONSE_BYTES,
    UPSTREAM_MAX_EVENT_BYTES,
    UPSTREAM_REQUEST_TIMEOUT,
    UPSTREAM_BREAKER_THRESHOLD,
    UPSTREAM_BREAKER_OPEN_SECONDS,
    POOL_TLS_ENABLED,
    POOL_TLS_CERT_PATH,
    POOL_TLS_KEY_PATH,
    POOL_TLS_CA_PATH,
];
