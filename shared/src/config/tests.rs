use std::collections::HashMap;
use std::io::Write;

use super::*;
use std::time::Duration;

use crate::domain::pool::{Isolation, PoolConfig, Strategy};

fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load(pairs: &[(&str, &str)], yaml: Option<&str>) -> Result<Config, ConfigError> {
    let env = env_of(pairs);
    let lookup = move |k: &str| env.get(k).cloned();
    match yaml {
        None => Config::load(&lookup, None),
        Some(text) => {
            let dir = std::env::temp_dir().join(format!("poolgate-config-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join("config.yaml");
            std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .expect("write yaml");
            let result = Config::load(&lookup, Some(&path));
            let _ = std::fs::remove_dir_all(&dir);
            result
        }
    }
}

const SEED_YAML: &str = r#"
pooling:
  enabled: true
  defaults:
    strategy: least_connections
    min_size: 2
    max_size: 12
    timeout: 45
    recycle_seconds: 7200
    pre_ping: false
  manager:
    cleanup_interval: 120
    health_check_interval: 30
    metrics_retention_days: 14
  redis:
    enabled: false
    url: redis://localhost:6379/0
    prefix: "mcpgateway:pool:"
"#;

#[test]
fn defaults_without_env_or_file() {
    let c = load(&[], None).expect("defaults are valid");
    assert_eq!(c.mode(), Mode::Embedded);
    assert_eq!(c.server.port, DEFAULT_PORT);
    assert_eq!(c.database.url, DEFAULT_DATABASE_URL);
    assert_eq!(c.database.kind, DatabaseKind::Sqlite);
    assert_eq!(c.pooling.defaults, PoolConfig::default());
    assert_eq!(c.pooling.redis.prefix, "mcpgateway:pool:");
    assert_eq!(c.pooling.manager.cleanup_interval, Duration::from_secs(300));
    assert_eq!(c.pooling.manager.health_check_interval, Duration::from_secs(60));
    assert_eq!(c.pooling.manager.metrics_retention_days, 7);
    assert_eq!(c.pooling.redis.leader_ttl, Duration::from_secs(15));
    assert_eq!(c.pooling.redis.leader_heartbeat_interval, Duration::from_secs(5));
    assert_eq!(c.auth.admin_roles, vec!["admin", "operator"]);
    assert!(c.auth.required);
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(30));
    assert_eq!(c.server.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(c.server.max_concurrent_requests, Some(4096));
    assert_eq!(c.server.max_connections_per_ip, None);
}

#[test]
fn connection_limits_from_env_and_file_and_zero_turns_them_off() {
    let yaml = "server:\n  header_read_timeout: 3\n  max_connections_per_ip: 20\n  max_concurrent_requests: 0\n";
    let c = load(&[("SERVER_KEEPALIVE_TIMEOUT", "5")], Some(yaml)).expect("valid");
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(3));
    assert_eq!(c.server.keepalive_timeout, Duration::from_secs(5));
    assert_eq!(c.server.max_connections_per_ip, Some(20));
    assert_eq!(c.server.max_concurrent_requests, None, "0: no cap");
}

#[test]
fn file_overrides_defaults() {
    let c = load(&[], Some(SEED_YAML)).expect("seed yaml is valid");
    let d = c.pooling.defaults;
    assert_eq!(d.pool_strategy, Strategy::LeastConnections);
    assert_eq!((d.pool_min_size, d.pool_max_size, d.pool_timeout), (2, 12, 45));
    assert_eq!(d.pool_recycle_seconds, 7200);
    assert!(!d.pool_pre_ping);
    assert_eq!(c.pooling.manager.metrics_retention_days, 14);
    assert_eq!(c.pooling.manager.cleanup_interval, Duration::from_secs(120));
    // `redis.enabled: false` wins over a present URL: the seed file keeps embedded mode.
    assert_eq!(c.mode(), Mode::Embedded);
}

#[test]
fn env_overrides_file() {
    let c = load(
        &[
            ("POOL_DEFAULT_MAX_SIZE", "30"),
            ("POOL_MANAGER_METRICS_RETENTION_DAYS", "3"),
            ("POOL_DEFAULT_STRATEGY", "sticky"),
        ],
        Some(SEED_YAML),
    )
    .expect("valid");
    assert_eq!(c.pooling.defaults.pool_max_size, 30);
    assert_eq!(c.pooling.defaults.pool_strategy, Strategy::Sticky);
    assert_eq!(c.pooling.manager.metrics_retention_days, 3);
    // Keys the environment does not set still come from the file.
    assert_eq!(c.pooling.defaults.pool_min_size, 2);
}

#[test]
fn seed_001_short_names_are_aliases_and_long_names_win() {
    let c = load(
        &[
            ("POOL_MIN_SIZE", "4"),
            ("POOL_MAX_SIZE", "8"),
            ("POOL_ISOLATION", "shared"),
        ],
        None,
    )
    .expect("valid");
    assert_eq!(
        (c.pooling.defaults.pool_min_size, c.pooling.defaults.pool_max_size),
        (4, 8)
    );
    assert_eq!(c.pooling.defaults.pool_isolation, Isolation::Shared);
    let c = load(&[("POOL_MAX_SIZE", "8"), ("POOL_DEFAULT_MAX_SIZE", "9")], None).expect("valid");
    assert_eq!(c.pooling.defaults.pool_max_size, 9);
}

#[test]
fn each_invalid_setting_names_its_key() {
    let secret = "x".repeat(40);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("PORT", "http")], "PORT"),
        (vec![("PORT", "70000")], "PORT"),
        (vec![("LOG_LEVEL", "loud")], "LOG_LEVEL"),
        (vec![("ALLOWED_ORIGINS", "app.example.com")], "ALLOWED_ORIGINS"),
        (
            vec![("ALLOWED_ORIGINS", "https://app.example.com/path")],
            "ALLOWED_ORIGINS",
        ),
        (vec![("AUTH_REQUIRED", "maybe")], "AUTH_REQUIRED"),
        (vec![("JWT_SECRET_KEY", "short")], "JWT_SECRET_KEY"),
        (vec![("POOL_ADMIN_ROLES", " , ")], "POOL_ADMIN_ROLES"),
        (vec![("SESSION_SECRET_FALLBACKS", "short")], "SESSION_SECRET_FALLBACKS"),
        (vec![("POOL_ENABLED", "2")], "POOL_ENABLED"),
        (vec![("POOL_DEFAULT_STRATEGY", "fastest")], "POOL_DEFAULT_STRATEGY"),
        (vec![("POOL_DEFAULT_MIN_SIZE", "-1")], "POOL_DEFAULT_MIN_SIZE"),
        (vec![("POOL_DEFAULT_MIN_SIZE", "20")], "POOL_DEFAULT_MIN_SIZE"),
        (vec![("POOL_DEFAULT_MAX_SIZE", "abc")], "POOL_DEFAULT_MAX_SIZE"),
        (vec![("POOL_DEFAULT_MAX_SIZE", "0")], "POOL_DEFAULT_MAX_SIZE"),
        (vec![("POOL_DEFAULT_TIMEOUT", "0")], "POOL_DEFAULT_TIMEOUT"),
        (
            vec![("POOL_DEFAULT_RECYCLE_SECONDS", "0")],
            "POOL_DEFAULT_RECYCLE_SECONDS",
        ),
        (vec![("POOL_DEFAULT_PRE_PING", "sometimes")], "POOL_DEFAULT_PRE_PING"),
        (vec![("POOL_DEFAULT_ISOLATION", "none")], "POOL_DEFAULT_ISOLATION"),
        (
            vec![("POOL_DEFAULT_SESSION_CAPACITY", "0")],
            "POOL_DEFAULT_SESSION_CAPACITY",
        ),
        (vec![("POOL_DEFAULT_LEASE_TTL", "0")], "POOL_DEFAULT_LEASE_TTL"),
        (vec![("POOL_DEFAULT_IDLE_TTL", "x")], "POOL_DEFAULT_IDLE_TTL"),
        (vec![("POOL_MIN_SIZE", "x")], "POOL_MIN_SIZE"),
        (
            vec![("POOL_MANAGER_CLEANUP_INTERVAL", "0")],
            "POOL_MANAGER_CLEANUP_INTERVAL",
        ),
        (vec![("POOL_PRE_PING_WINDOW", "soon")], "POOL_PRE_PING_WINDOW"),
        (
            vec![("POOL_MANAGER_HEALTH_CHECK_INTERVAL", "soon")],
            "POOL_MANAGER_HEALTH_CHECK_INTERVAL",
        ),
        (
            vec![("POOL_MANAGER_METRICS_RETENTION_DAYS", "0")],
            "POOL_MANAGER_METRICS_RETENTION_DAYS",
        ),
        (vec![("REDIS_ENABLED", "true")], "REDIS_URL"),
        (vec![("REDIS_ENABLED", "perhaps")], "REDIS_ENABLED"),
        (vec![("REDIS_URL", "http://x")], "REDIS_URL"),
        (vec![("REDIS_POOL_PREFIX", "a{b}")], "REDIS_POOL_PREFIX"),
        (vec![("REDIS_LEADER_TTL", "0")], "REDIS_LEADER_TTL"),
        (vec![("REDIS_LEADER_TTL", "8")], "REDIS_LEADER_RENEW_DEADLINE"),
        (
            vec![("REDIS_LEADER_HEARTBEAT_INTERVAL", "10")],
            "REDIS_LEADER_RENEW_DEADLINE",
        ),
        (vec![("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
        (vec![("SHUTDOWN_GRACE_SECONDS", "-3")], "SHUTDOWN_GRACE_SECONDS"),
        (vec![("ADMIN_BODY_LIMIT", "10")], "ADMIN_BODY_LIMIT"),
        (vec![("SERVER_HEADER_READ_TIMEOUT", "0")], "SERVER_HEADER_READ_TIMEOUT"),
        (vec![("SERVER_BODY_READ_TIMEOUT", "soon")], "SERVER_BODY_READ_TIMEOUT"),
        (vec![("SERVER_KEEPALIVE_TIMEOUT", "0")], "SERVER_KEEPALIVE_TIMEOUT"),
        (
            vec![("SERVER_MAX_CONCURRENT_REQUESTS", "-1")],
            "SERVER_MAX_CONCURRENT_REQUESTS",
        ),
        (
            vec![("SERVER_MAX_CONNECTIONS_PER_IP", "many")],
            "SERVER_MAX_CONNECTIONS_PER_IP",
        ),
        (
            vec![("UPSTREAM_MAX_RESPONSE_BYTES", "100")],
            "UPSTREAM_MAX_RESPONSE_BYTES",
        ),
        (vec![("UPSTREAM_MAX_EVENT_BYTES", "lots")], "UPSTREAM_MAX_EVENT_BYTES"),
        (
            vec![
                ("UPSTREAM_MAX_RESPONSE_BYTES", "4096"),
                ("UPSTREAM_MAX_EVENT_BYTES", "8192"),
            ],
            "UPSTREAM_MAX_EVENT_BYTES",
        ),
        (vec![("UPSTREAM_REQUEST_TIMEOUT", "0")], "UPSTREAM_REQUEST_TIMEOUT"),
        (vec![("UPSTREAM_BREAKER_THRESHOLD", "-1")], "UPSTREAM_BREAKER_THRESHOLD"),
        (
            vec![("UPSTREAM_BREAKER_OPEN_SECONDS", "0")],
            "UPSTREAM_BREAKER_OPEN_SECONDS",
        ),
        // Distributed mode: PostgreSQL and a JWT secret are required.
        (
            vec![
                ("REDIS_URL", "redis://127.0.0.1:1"),
                ("JWT_SECRET_KEY", secret.as_str()),
            ],
            "DATABASE_URL",
        ),
        (
            vec![
                ("REDIS_URL", "redis://127.0.0.1:1"),
                ("DATABASE_URL", "postgres://u@h/db"),
            ],
            "JWT_SECRET_KEY",
        ),
    ];
    for (env, key) in cases {
        let err = load(&env, None).expect_err(key);
        assert_eq!(err.key(), Some(key), "{env:?} gave {err}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn file_errors_name_the_env_key_and_the_yaml_path() {
    let err = load(&[], Some("pooling:\n  defaults:\n    max_size: zero\n")).expect_err("bad");
    let key = err.key().expect("names a key");
    assert!(
        key.contains("POOL_DEFAULT_MAX_SIZE") && key.contains("pooling.defaults.max_size"),
        "{err}"
    );
}

#[test]
fn unknown_yaml_keys_stop_start_up() {
    let err = load(&[], Some("pooling:\n  defaults:\n    max_sise: 3\n")).expect_err("typo");
    assert!(err.to_string().contains("pooling.defaults.max_sise"), "{err}");
    let err = load(&[], Some("pooling: [1, 2]\n")).expect_err("not a mapping");
    assert!(err.to_string().contains("pooling"), "{err}");
    let err = load(&[], Some("pooling: {defaults: {max_size: [1]}}\n")).expect_err("list where scalar");
    assert!(err.to_string().contains("max_size"), "{err}");
}

#[test]
fn distributed_mode_with_everything_it_needs() {
    let secret = "k".repeat(32);
    let c = load(
        &[
            ("REDIS_URL", "redis://:pw@127.0.0.1:6379/0"),
            ("DATABASE_URL", "postgres://u:pw@h/db"),
            ("JWT_SECRET_KEY", &secret),
        ],
        None,
    )
    .expect("valid");
    assert_eq!(c.mode(), Mode::Distributed);
    let summary = format!("{:?} {:?}", c.summary(), c);
    assert!(
        !summary.contains("pw@") && !summary.contains(&secret),
        "secrets leak: {summary}"
    );
    assert!(summary.contains("[redacted]"));
    // REDIS_ENABLED=false forces embedded even with a URL.
    let c = load(
        &[("REDIS_URL", "redis://127.0.0.1:6379"), ("REDIS_ENABLED", "false")],
        None,
    )
    .expect("valid");
    assert_eq!(c.mode(), Mode::Embedded);
}

#[test]
fn summary_lists_every_key() {
    let c = load(&[], None).expect("valid");
    let names: Vec<&str> = c.summary().into_iter().map(|(k, _)| k).collect();
    for key in keys::ALL.iter().filter(|k| k.env != "REDIS_ENABLED") {
        assert!(names.contains(&key.env), "{} missing from summary", key.env);
    }
}

#[test]
fn the_example_file_is_valid_and_matches_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.yaml");
    let text = std::fs::read_to_string(&path).expect("config.example.yaml");
    let from_file = load(&[], Some(&text)).expect("example is valid");
    let defaults = load(&[], None).expect("defaults");
    // The example shows a Redis URL with Redis disabled: shown as not used, otherwise the same.
    let effective = |c: &Config| -> Vec<(&'static str, String)> {
        c.summary()
            .into_iter()
            .skip(2)
            .filter(|(k, _)| *k != "REDIS_URL")
            .collect()
    };
    assert_eq!(
        format!("{:?}", effective(&from_file)),
        format!("{:?}", effective(&defaults))
    );
    assert!(from_file
        .summary()
        .iter()
        .any(|(k, v)| *k == "REDIS_URL" && v.ends_with("(not used: REDIS_ENABLED=false)")));
}

#[test]
fn allowed_origins_are_normalized() {
    let c = load(
        &[("ALLOWED_ORIGINS", " https://App.Example.com/ , http://127.0.0.1:8080,*")],
        None,
    )
    .expect("valid");
    assert_eq!(
        c.server.allowed_origins,
        vec!["https://app.example.com", "http://127.0.0.1:8080", "*"]
    );
    assert!(load(&[], None).expect("valid").server.allowed_origins.is_empty());
}
