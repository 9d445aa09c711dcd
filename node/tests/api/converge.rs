//! Every change converges (SPEC §9, I14): an endpoint move drains the old endpoint and its
//! clients follow; a deleted server's sessions are closed and its pool leaves the control plane,
//! and a re-created one starts from nothing; a write made while Redis is away is stored, reported
//! as pending, and applied once Redis is back; direct SQL edits of the pool columns are enforced
//! within one reconcile interval; warm-up tops pools up within about a second.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolgate_control::slots::SlotClient;
use poolgate_control::{ControlPlane, Pools};
use poolgate_housekeeping as housekeeping;
use poolgate_loadtests::chaos::{ChaosProxy, Mode};
use poolgate_loadtests::launch::redis_call;
use poolgate_loadtests::upstream::UpstreamConfig;
use poolgate_shared::shutdown::Tracker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection as _;

use crate::helpers::{base_env, config_from, redis_url, Backend, TestApp, TestDb};
use crate::mcp_client::{register, unique_prefix, upstream, Client};

const FAST: [(&str, &str); 6] = [
    ("POOL_MANAGER_RECONCILE_INTERVAL", "1"),
    ("POOL_MANAGER_WARMUP_INTERVAL", "1"),
    ("POOL_MANAGER_HEALTH_CHECK_INTERVAL", "60"),
    // The in-process coordinator leads within a heartbeat.
    ("REDIS_LEADER_TTL", "3"),
    ("REDIS_LEADER_HEARTBEAT_INTERVAL", "1"),
    ("REDIS_LEADER_RENEW_DEADLINE", "2"),
];

async fn stats(app: &TestApp, id: &str) -> Value {
    let (status, s) = app
        .admin(Method::GET, &format!("/api/servers/{id}/pool/stats"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    s
}

/// Polls `check` every 50 ms until it holds or `limit` passes; returns how long it took.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_move_drains_the_old_endpoint_and_clients_follow() {
    let (a, b) = (
        upstream(UpstreamConfig::default()).await,
        upstream(UpstreamConfig::default()).await,
    );
    let app = TestApp::spawn_with(Backend::Sqlite, &FAST, &[]).await;
    register(&app, "mv", &a.url(), json!({"pool_isolation": "session"})).await;
    let mut client = Client::new(&app, "mv", "alice");
    client.initialize().await;
    client.call_ok(1, "echo", json!({"text": "on a"})).await;
    let (status, body) = app
        .admin(
            Method::PUT,
            "/api/servers/mv",
            Some(json!({"endpoints": [{"url": b.url()}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The session at A is closed upstream; the client's id no longer routes there.
    within(Duration::from_secs(3), "DELETE at the old endpoint", || async {
        a.stats().deletes.load(Ordering::Relaxed) >= 1
    })
    .await;
    let at_a = a.stats().requests.load(Ordering::Relaxed);
    let (status, _) = client.call(2, "echo", json!({"text": "still a?"})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the moved session is gone: the SDK re-initializes"
    );
    client.initialize().await;
    let result = client.call_ok(3, "echo", json!({"text": "on b"})).await;
    assert_eq!(result["content"][0]["text"], "on b");
    assert!(b.stats().tool_calls.load(Ordering::Relaxed) >= 1);
    assert_eq!(
        a.stats().requests.load(Ordering::Relaxed),
        at_a,
        "nothing reached A after the move"
    );
    let s = stats(&app, "mv").await;
    assert_eq!(s["total_sessions"], 1, "only B's session is left: {s}");
    app.stop().await;
}

/// Warm-up after create, delete (sessions closed upstream, pool keys gone from Redis) and
/// re-create under the same id (no old session served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_server_closes_its_sessions_and_a_recreated_one_starts_from_nothing() {
    let up = upstream(UpstreamConfig::default()).await;
    let prefix = unique_prefix();
    let db = TestDb::new(Backend::Postgres).await;
    let redis = redis_url();
    let mut set: Vec<(&str, &str)> = vec![("REDIS_URL", redis.as_str()), ("REDIS_POOL_PREFIX", prefix.as_str())];
    set.extend(FAST);
    let app = TestApp::spawn_on(db, &set, &[]).await.wait_ready().await;
    let coordinator = Coordinator::start(&app, &set).await;
    register(
        &app,
        "del",
        &up.url(),
        json!({"pool_isolation": "session", "pool_min_size": 2}),
    )
    .await;
    let took = within(Duration::from_secs(5), "warm-up to pool_min_size", || async {
        stats(&app, "del").await["available_sessions"] == 2
    })
    .await;
    eprintln!(
        "warm-up: pool_min_size 2 ready {} ms after the server was created",
        took.as_millis()
    );
    let mut client = Client::new(&app, "del", "bob");
    client.initialize().await;
    assert_eq!(client.count(1).await.0, 1);
    let (status, _) = app.admin(Method::DELETE, "/api/servers/del", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    within(Duration::from_secs(3), "every upstream session closed", || async {
        let s = up.stats();
        s.deletes.load(Ordering::Relaxed) >= s.initializes.load(Ordering::Relaxed)
    })
    .await;
    assert!(up.stats().initializes.load(Ordering::Relaxed) >= 2);
    let port = url::Url::parse(&redis).expect("redis url").port().unwrap_or(6379);
    let pattern = format!("{prefix}*del*");
    within(Duration::from_secs(5), "the pool's keys removed", || {
        let pattern = pattern.clone();
        async move {
            let keys = tokio::task::spawn_blocking(move || redis_call(port, &["KEYS", &pattern]))
                .await
                .expect("join")
                .expect("KEYS");
            keys.text().is_empty()
        }
    })
    .await;
    // Re-created: the old client's session is gone, and new clients get new sessions.
    register(&app, "del", &up.url(), json!({"pool_isolation": "session"})).await;
    let (status, _) = client.call(2, "counter", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut fresh = Client::new(&app, "del", "carol");
    fresh.initialize().await;
    assert_eq!(fresh.count(1).await.0, 1, "a new upstream session, not the old one");
    coordinator.stop().await;
    app.stop().await;
}

/// A pool change while Redis is cut is stored and answered 202 naming what is pending; once Redis
/// is back, the reconcile pass applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_redis_is_away_is_applied_when_it_returns() {
    let redis = url::Url::parse(&redis_url()).expect("redis url");
    let target = format!(
        "{}:{}",
        redis.host_str().unwrap_or("127.0.0.1"),
        redis.port().unwrap_or(6379)
    );
    let proxy = ChaosProxy::start(target.parse().expect("addr")).await.expect("proxy");
    let mut via = redis.clone();
    let _ = via.set_port(Some(proxy.addr.port()));
    let via = via.to_string();
    let prefix = unique_prefix();
    let mut set: Vec<(&str, &str)> = vec![("REDIS_URL", via.as_str()), ("REDIS_POOL_PREFIX", prefix.as_str())];
    set.extend(FAST);
    let app = TestApp::spawn_on(TestDb::new(Backend::Postgres).await, &set, &[])
        .await
        .wait_ready()
        .await;
    let coordinator = Coordinator::start(&app, &set).await;
    let up = upstream(UpstreamConfig::default()).await;
    register(&app, "rw", &up.url(), json!({"pool_max_size": 2})).await;
    assert_eq!(stats(&app, "rw").await["enforced_max_size"], 2);
    proxy.set(Mode::Cut);
    let resp = app
        .client
        .put(app.url("/api/servers/rw/pool/config"))
        .bearer_auth(app.admin_token())
        .json(&json!({"max_size": 5}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "stored, not yet applied");
    let warning = resp
        .headers()
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        warning.contains("not yet applied") && warning.contains("reconcile"),
        "{warning}"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["pool_max_size"], 5, "the stored value: {body}");
    proxy.set(Mode::Pass);
    let took = within(
        Duration::from_secs(10),
        "the pool enforces the stored value",
        || async { app.admin(Method::GET, "/api/servers/rw/pool/stats", None).await.1["enforced_max_size"] == 5 },
    )
    .await;
    eprintln!("converged {} ms after Redis returned", took.as_millis());
    coordinator.stop().await;
    app.stop().await;
}

/// The seed's "or directly in database": `pool_max_size` and `pool_enabled` changed in SQL are
/// enforced within one reconcile interval (a disabled pool drains its sessions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_sql_edits_are_enforced_within_one_interval() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(Backend::Sqlite, &FAST, &[]).await;
    register(
        &app,
        "sql",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 4, "pool_min_size": 1}),
    )
    .await;
    within(Duration::from_secs(5), "warm-up", || async {
        stats(&app, "sql").await["available_sessions"] == 1
    })
    .await;
    let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.expect("db");
    sqlx::query("UPDATE servers SET pool_max_size = 2 WHERE id = 'sql'")
        .execute(&mut conn)
        .await
        .expect("update");
    within(Duration::from_secs(3), "max_size from SQL enforced", || async {
        stats(&app, "sql").await["enforced_max_size"] == 2
    })
    .await;
    sqlx::query("UPDATE servers SET pool_enabled = FALSE WHERE id = 'sql'")
        .execute(&mut conn)
        .await
        .expect("update");
    within(Duration::from_secs(3), "the disabled pool drains", || async {
        let s = stats(&app, "sql").await;
        s["enforced_enabled"] == false && s["total_sessions"] == 0
    })
    .await;
    let _ = conn.close().await;
    assert!(
        up.stats().deletes.load(Ordering::Relaxed) >= 1,
        "its session was closed upstream"
    );
    app.stop().await;
}

/// Warm-up follows a change at once: after enabling a pool and after a reset, `pool_min_size`
/// sessions are ready within about a second (reported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_follows_enable_and_reset_within_about_a_second() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(Backend::Sqlite, &FAST, &[]).await;
    app.create_server(
        "warm",
        json!({"endpoints": [{"url": up.url()}], "pool_enabled": false, "pool_min_size": 3}),
    )
    .await;
    let (status, _) = app
        .admin(
            Method::PUT,
            "/api/servers/warm/pool/config",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let after_enable = within(Duration::from_secs(3), "warm after enable", || async {
        stats(&app, "warm").await["available_sessions"] == 3
    })
    .await;
    let (status, body) = app.admin(Method::POST, "/api/servers/warm/pool/reset", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after_reset = within(Duration::from_secs(3), "warm after reset", || async {
        let s = stats(&app, "warm").await;
        s["available_sessions"] == 3 && s["total_creates"] == 6
    })
    .await;
    eprintln!(
        "warm-up to pool_min_size 3: {} ms after enable, {} ms after reset",
        after_enable.as_millis(),
        after_reset.as_millis()
    );
    app.stop().await;
}

/// The coordinator's housekeeping, in-process, for a distributed-mode test.
struct Coordinator {
    stop: tokio::sync::watch::Sender<bool>,
    running: housekeeping::Running,
}

impl Coordinator {
    async fn start(app: &TestApp, set: &[(&str, &str)]) -> Coordinator {
        let mut env = base_env(&app.db);
        for (k, v) in set {
            env.insert((*k).into(), (*v).into());
        }
        let config = config_from(&env);
        let store = poolgate_store::Store::connect(&config.database.url, &config.database.kind).expect("store");
        let control = ControlPlane::from_config(&config).expect("control plane");
        let slots = SlotClient::from_config(
            Pools::new(control.clone(), store),
            &config,
            "test-coordinator",
            Arc::new(Tracker::default()),
        )
        .expect("slots");
        let leadership = housekeeping::Leadership::new(control, "test-coordinator", housekeeping::timing(&config));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = housekeeping::spawn(slots, leadership, housekeeping::Schedule::from_config(&config), stopped);
        Coordinator { stop, running }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.running.join().await;
    }
}
