//! The seeds' settings, routes and habits work as their users expect (issue: every seed setting
//! does what it says): seed 000's `.env` is applied or warned about by name, its troubleshooting
//! curl and health route work as written, `POOL_ADMIN_AUTH_REQUIRED` protects the admin API on its
//! own, and `poolctl enable-pooling --percentage N` rolls pooling out by a stable share.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::peers::{ChildGuard, TempDir};
use crate::poolctl::poolctl;

const BIN: &str = env!("CARGO_BIN_EXE_poolgate-node");

/// Seed 000's environment, verbatim: its `.env` block and every `export` of its tuning,
/// security and audit sections — but its `POOL_TLS_*` exports: those are supported now and name
/// files under `/etc/certs` that do not exist here, so with them the node would (rightly) refuse
/// to start (tls.rs tests them with real files). `REDIS_SOCKET_TIMEOUT` and
/// `REDIS_SOCKET_CONNECT_TIMEOUT` (seed 003's, still not supported) stand in for them to keep
/// the "warned about by name" half of the test.
const SEED_000_ENV: [(&str, &str); 28] = [
    ("POOL_ENABLED", "true"),
    ("POOL_DEFAULT_STRATEGY", "round_robin"),
    ("POOL_DEFAULT_MIN_SIZE", "2"),
    ("POOL_DEFAULT_MAX_SIZE", "10"),
    ("POOL_DEFAULT_TIMEOUT", "30"),
    ("POOL_DEFAULT_RECYCLE_SECONDS", "3600"),
    ("POOL_DEFAULT_PRE_PING", "true"),
    ("POOL_MANAGER_CLEANUP_INTERVAL", "300"),
    ("POOL_MANAGER_HEALTH_CHECK_INTERVAL", "60"),
    ("POOL_MANAGER_METRICS_RETENTION_DAYS", "7"),
    ("REDIS_ENABLED", "false"),
    ("REDIS_URL", "redis://localhost:6379/0"),
    ("REDIS_POOL_PREFIX", "mcpgateway:pool:"),
    ("DB_POOL_SIZE", "50"),
    ("DB_MAX_OVERFLOW", "100"),
    ("DB_POOL_TIMEOUT", "30"),
    ("REDIS_POOL_SIZE", "20"),
    ("REDIS_POOL_TIMEOUT", "5"),
    ("REDIS_SOCKET_KEEPALIVE", "true"),
    ("REDIS_SOCKET_TIMEOUT", "5.0"),
    ("REDIS_SOCKET_CONNECT_TIMEOUT", "5.0"),
    ("POOL_ADMIN_AUTH_REQUIRED", "true"),
    ("POOL_ADMIN_ROLES", "admin,operator"),
    ("POOL_DEFAULT_ISOLATION", "session"),
    ("POOL_DEFAULT_SESSION_CAPACITY", "1"),
    ("POOL_DEFAULT_LEASE_TTL", "60"),
    ("POOL_DEFAULT_IDLE_TTL", "1800"),
    ("POOL_PRE_PING_WINDOW", "5"),
];

/// Runs the node binary with seed 000's environment: every variable is either applied (it shows
/// in the start-up configuration log with its value) or named in a warning saying it has no
/// effect and why.
#[tokio::test]
async fn seed_000_env_is_applied_or_warned_about_by_name() {
    let dir = TempDir::new();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("node.db").display()),
        )
        .env("LOG_LEVEL", "info");
    for (k, v) in SEED_000_ENV {
        cmd.env(k, v);
    }
    let node = ChildGuard::spawn("poolgate-node", cmd, &dir);
    let started = Instant::now();
    while !node.output().contains("poolgate node listening") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no start-up\n{}",
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = node.output();
    for (k, v) in SEED_000_ENV {
        let applied = log.contains(&format!("config {k}={v}"));
        let warned = log
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&format!("{k} is set but has no effect")));
        assert!(applied || warned, "{k}={v} neither applied nor warned about:\n{log}");
        assert!(!(applied && warned), "{k}: both applied and warned about");
    }
    for unsupported in ["REDIS_SOCKET_TIMEOUT", "REDIS_SOCKET_CONNECT_TIMEOUT"] {
        assert!(
            log.contains(&format!("{unsupported} is set but has no effect: not supported (")),
            "{log}"
        );
    }
}

/// Seed 000's troubleshooting commands as written: `curl -X PUT -H "Authorization: …" -d
/// '{"max_size": 20}' …/pool/config` (curl sends a form content type) and `GET
/// /api/servers/server-1/health`.
#[tokio::test]
async fn seed_000_troubleshooting_curl_and_health_route_work() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_server("server-1", json!({"pool_enabled": true})).await;
    let resp = app
        .client
        .put(app.url("/api/servers/server-1/pool/config"))
        .header("authorization", format!("Bearer {}", app.admin_token()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"max_size": 20}"#)
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["pool_max_size"], 20);
    let (status, health) = app
        .call(
            Method::GET,
            "/api/servers/server-1/health",
            Some(&app.reader_token()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["server_id"], "server-1");
    assert!(["healthy", "degraded", "unhealthy"].contains(&health["status"].as_str().unwrap_or_default()));
    assert_eq!(health["endpoints"][0]["state"], "closed", "{health}");
    assert!(health["health_score"].is_number(), "{health}");
    let (status, _) = app
        .call(Method::GET, "/api/servers/nope/health", Some(&app.reader_token()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// `POOL_ADMIN_AUTH_REQUIRED=true` with `AUTH_REQUIRED=false`: MCP clients need no token, the
/// admin API still does.
#[tokio::test]
async fn pool_admin_auth_required_protects_the_admin_api_on_its_own() {
    let up = crate::mcp_client::upstream(poolgate_loadtests::upstream::UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("AUTH_REQUIRED", "false"), ("POOL_ADMIN_AUTH_REQUIRED", "true")],
        &[],
    )
    .await;
    crate::mcp_client::register(&app, "open", &up.url(), json!({})).await;
    let (status, _) = app.call(Method::GET, "/api/servers", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the admin API wants a token");
    let answer = app
        .client
        .post(app.url("/servers/open/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .expect("initialize");
    assert_eq!(answer.status(), StatusCode::OK, "MCP clients need none");
    app.stop().await;
}

/// `poolctl enable-pooling --percentage N`: a stable share of the servers by id hash, so the
/// servers at 10 % are among those at 50 %; `--dry-run` changes nothing; `disable-pooling` rolls
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poolctl_rolls_pooling_out_by_a_stable_share() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for i in 0..20 {
        app.create_server(&format!("srv-{i}"), json!({"pool_enabled": false}))
            .await;
    }
    let enabled = || async {
        let (_, servers) = app.admin(Method::GET, "/api/servers", None).await;
        servers
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["pool_enabled"] == true)
                    .filter_map(|s| s["id"].as_str().map(str::to_owned))
                    .collect::<BTreeSet<String>>()
            })
            .unwrap_or_default()
    };
    let chosen = |out: &str| -> BTreeSet<String> {
        let v: Value = serde_json::from_str(out).expect("json");
        v["server_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let (code, out, err) = poolctl(&app, &["--json", "enable-pooling", "--percentage", "50", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let would = chosen(&out);
    assert!(enabled().await.is_empty(), "a dry run changes nothing");
    let (code, out, _) = poolctl(&app, &["--json", "enable-pooling", "--percentage", "10"]).await;
    assert_eq!(code, 0);
    let ten = chosen(&out);
    assert_eq!(enabled().await, ten);
    let (_, out, _) = poolctl(&app, &["--json", "enable-pooling", "--percentage", "50"]).await;
    let fifty = chosen(&out);
    assert_eq!(fifty, would, "the same share every run");
    assert!(ten.is_subset(&fifty), "10 % within 50 %");
    assert!(fifty.len() > ten.len() && fifty.len() < 20, "{} of 20", fifty.len());
    assert_eq!(enabled().await, fifty);
    let (_, out, _) = poolctl(&app, &["--json", "enable-pooling", "--percentage", "100"]).await;
    assert_eq!(chosen(&out).len(), 20);
    let (code, _, _) = poolctl(&app, &["--json", "disable-pooling", "--percentage", "100"]).await;
    assert_eq!(code, 0);
    assert!(enabled().await.is_empty(), "rolled back");
    let (code, _, err) = poolctl(&app, &["enable-pooling"]).await;
    assert_eq!(code, 2, "usage: {err}");
    app.stop().await;
}

/// `DB_POOL_SIZE` and `REDIS_POOL_SIZE` size the connection pools: under concurrent load a node
/// with `DB_POOL_SIZE=3` holds at most 3 PostgreSQL connections, and one with `REDIS_POOL_SIZE=4`
/// holds 4 Redis connections plus its pub/sub one (counted through a proxy in front of Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pools_follow_db_pool_size_and_redis_pool_size() {
    use sqlx::Connection as _;
    let (proxy, via) = crate::mcp_client::redis_through_proxy().await;
    let prefix = crate::mcp_client::unique_prefix();
    let db = crate::helpers::TestDb::new(Backend::Postgres).await;
    let db_name = url::Url::parse(&db.url)
        .expect("db url")
        .path()
        .trim_start_matches('/')
        .to_owned();
    let app = TestApp::spawn_on(
        db,
        &[
            ("REDIS_URL", via.as_str()),
            ("REDIS_POOL_PREFIX", prefix.as_str()),
            ("DB_POOL_SIZE", "3"),
            ("REDIS_POOL_SIZE", "4"),
        ],
        &[],
    )
    .await
    .wait_ready()
    .await;
    for i in 0..5 {
        app.create_server(&format!("p{i}"), json!({"pool_enabled": true})).await;
    }
    let mut monitor = sqlx::PgConnection::connect(&crate::helpers::pg_admin_url())
        .await
        .expect("monitor");
    let load = async {
        let paths: Vec<String> = (0..60).map(|i| format!("/api/servers/p{}/pool/stats", i % 5)).collect();
        let calls = paths.iter().map(|p| app.admin(Method::GET, p, None));
        futures_util::future::join_all(calls).await
    };
    let sample = async {
        let mut most = 0i64;
        for _ in 0..20 {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(&db_name)
                .fetch_one(&mut monitor)
                .await
                .expect("pg_stat_activity");
            most = most.max(n);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        most
    };
    let (answers, most) = tokio::join!(load, sample);
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK));
    assert!((1..=3).contains(&most), "PostgreSQL connections of the node: {most}");
    assert_eq!(proxy.open_connections(), 5, "4 command connections + 1 pub/sub");
    let _ = monitor.close().await;
    app.stop().await;
}
