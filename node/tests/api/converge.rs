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
use poolgate_loadtests::chaos::Mode;
use poolgate_loadtests::launch::redis_call;
use poolgate_loadtests::upstream::UpstreamConfig;
use poolgate_shared::shutdown::Tracker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection as _;

use crate::helpers::{base_env, config_from, redis_url, Backend, TestApp, TestDb};
use crate::mcp_client::{redis_through_proxy, register, unique_prefix, upstream, Client};

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
    let (proxy, via) = redis_through_proxy().await;
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

/// Seed 000's remedy for memory exhaustion — lower `POOL_DEFAULT_MAX_SIZE` and restart — applies
/// to existing servers that never set the field (and is shown as following the default), not to
/// one that set it; a value changed directly in SQL is explicit from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_defaults_apply_to_servers_that_never_set_the_field() {
    let db = TestDb::new(Backend::Sqlite).await;
    let first = TestApp::spawn_on(TestDb::new_shared(&db.url), &[("POOL_DEFAULT_MAX_SIZE", "8")], &[]).await;
    first.create_server("follows", json!({"pool_enabled": true})).await;
    first
        .create_server("pinned", json!({"pool_enabled": true, "pool_max_size": 8}))
        .await;
    first.create_server("edited", json!({"pool_enabled": true})).await;
    let (_, follows) = first.admin(Method::GET, "/api/servers/follows", None).await;
    assert_eq!(follows["pool_max_size"], 8);
    let listed: Vec<Value> = follows["pool_following_defaults"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(listed.contains(&json!("pool_max_size")), "{follows}");
    let (_, pinned) = first.admin(Method::GET, "/api/servers/pinned", None).await;
    assert!(
        !pinned["pool_following_defaults"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("pool_max_size"))),
        "{pinned}"
    );
    first.stop().await;
    // A DBA edits one server's column directly while the node is down.
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.expect("db");
    sqlx::query("UPDATE servers SET pool_max_size = 6 WHERE id = 'edited'")
        .execute(&mut conn)
        .await
        .expect("update");
    let _ = conn.close().await;
    let mut set: Vec<(&str, &str)> = vec![("POOL_DEFAULT_MAX_SIZE", "3")];
    set.extend(FAST);
    let second = TestApp::spawn_on(TestDb::new_shared(&db.url), &set, &[]).await;
    let max = |body: &Value| body["pool_max_size"].clone();
    assert_eq!(max(&second.admin(Method::GET, "/api/servers/follows", None).await.1), 3);
    assert_eq!(max(&second.admin(Method::GET, "/api/servers/pinned", None).await.1), 8);
    assert_eq!(max(&second.admin(Method::GET, "/api/servers/edited", None).await.1), 6);
    within(
        Duration::from_secs(3),
        "the lowered default enforced by the pool",
        || async { stats(&second, "follows").await["enforced_max_size"] == 3 },
    )
    .await;
    // Setting it explicitly ends the following.
    let (status, _) = second
        .admin(
            Method::PUT,
            "/api/servers/follows/pool/config",
            Some(json!({"max_size": 4})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, now) = second.admin(Method::GET, "/api/servers/follows", None).await;
    assert_eq!(now["pool_max_size"], 4);
    assert!(
        !now["pool_following_defaults"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("pool_max_size"))),
        "{now}"
    );
    second.stop().await;
    drop(db);
}

/// New upstream credentials: sessions opened with the old headers are closed, their clients get
/// 404 and re-initialize onto a session opened with the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_change_recycles_sessions_opened_with_the_old_credentials() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(Backend::Sqlite, &FAST, &[]).await;
    register(
        &app,
        "hdr",
        &up.url(),
        json!({"pool_isolation": "session", "headers": {"X-Api-Key": "old"}}),
    )
    .await;
    let mut client = Client::new(&app, "hdr", "dora");
    client.initialize().await;
    assert_eq!(client.count(1).await.0, 1);
    let (status, _) = app
        .admin(
            Method::PUT,
            "/api/servers/hdr",
            Some(json!({"headers": {"X-Api-Key": "new"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    within(Duration::from_secs(3), "the old session closed upstream", || async {
        up.stats().deletes.load(Ordering::Relaxed) >= 1
    })
    .await;
    let (status, _) = client.call(2, "counter", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    client.initialize().await;
    assert_eq!(client.count(3).await.0, 1, "a new upstream session");
    app.stop().await;
}

/// Seeded churn under client traffic: admin changes, direct SQL, endpoint moves, deletes and
/// re-creates, Redis cut by the chaos proxy. Afterwards, within one reconcile interval, every
/// pool's enforced configuration equals the database's, no session sits at an endpoint its
/// server no longer has, no pool holds more sessions than its max (I1), and every server serves
/// new clients (capacity fully back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_churn_converges() {
    let seed: u64 = std::env::var("POOLGATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(uuid::Uuid::new_v4().as_u128() as u32) | 1);
    eprintln!("seeded_churn_converges: POOLGATE_TEST_SEED={seed}");
    let mut rng = crate::fuzz::Rng::new(seed);
    let (proxy, via) = redis_through_proxy().await;
    let prefix = unique_prefix();
    let mut set: Vec<(&str, &str)> = vec![("REDIS_URL", via.as_str()), ("REDIS_POOL_PREFIX", prefix.as_str())];
    set.extend(FAST);
    let app = TestApp::spawn_on(TestDb::new(Backend::Postgres).await, &set, &[])
        .await
        .wait_ready()
        .await;
    let coordinator = Coordinator::start(&app, &set).await;
    let ups = [
        upstream(UpstreamConfig::default()).await,
        upstream(UpstreamConfig::default()).await,
    ];
    let ids = ["c0", "c1", "c2"];
    for id in ids {
        register(
            &app,
            id,
            &ups[0].url(),
            json!({"pool_max_size": 3, "pool_isolation": "shared"}),
        )
        .await;
    }
    let mut pg = sqlx::PgConnection::connect(&app.db.url).await.expect("db");
    for step in 0..40 {
        let id = ids[rng.below(3)];
        match rng.below(7) {
            0 => {
                let max = 1 + (rng.below(4) as u64);
                let _ = app
                    .admin(
                        Method::PUT,
                        &format!("/api/servers/{id}/pool/config"),
                        Some(json!({"max_size": max})),
                    )
                    .await;
            }
            1 => {
                let url = ups[rng.below(2)].url();
                let _ = app
                    .admin(
                        Method::PUT,
                        &format!("/api/servers/{id}"),
                        Some(json!({"endpoints": [{"url": url}]})),
                    )
                    .await;
            }
            2 => {
                let max = 1 + (rng.below(4) as u64) as i32;
                let _ = sqlx::query("UPDATE servers SET pool_max_size = $1, pool_min_size = 0 WHERE id = $2")
                    .bind(max)
                    .bind(id)
                    .execute(&mut pg)
                    .await;
            }
            3 => {
                let _ = app.admin(Method::DELETE, &format!("/api/servers/{id}"), None).await;
                let url = ups[rng.below(2)].url();
                let (_, _) = app
                    .admin(
                        Method::POST,
                        "/api/servers",
                        Some(
                            json!({"id": id, "name": id, "endpoints": [{"url": url}], "pool_enabled": true,
                            "pool_min_size": 0, "pool_isolation": "shared"}),
                        ),
                    )
                    .await;
            }
            4 => {
                proxy.set(Mode::Cut);
                tokio::time::sleep(Duration::from_millis(100 + (rng.below(400) as u64))).await;
                proxy.set(Mode::Pass);
            }
            5 => {
                let enabled = rng.below(4) != 0;
                let _ = app
                    .admin(
                        Method::PUT,
                        &format!("/api/servers/{id}/pool/config"),
                        Some(json!({"enabled": enabled})),
                    )
                    .await;
            }
            _ => {
                // Client traffic; failures are expected while Redis is cut or a server is gone.
                let mut c = Client::new(&app, id, &format!("u{step}"));
                let (status, body, sid) = c
                    .post(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
                    .await;
                assert!(
                    status.as_u16() < 500 || status.as_u16() == 502 || status.as_u16() == 503,
                    "{status}: {body}"
                );
                if let Some(sid) = sid {
                    c.session = Some(sid);
                    let (status, _) = c.call(1, "echo", json!({"text": "churn"})).await;
                    assert!(status.as_u16() != 500, "step {step}: {status}");
                }
            }
        }
    }
    proxy.set(Mode::Pass);
    // Converged: within a few reconcile intervals the control plane matches the database.
    for id in ids {
        let (_, server) = app.admin(Method::GET, &format!("/api/servers/{id}"), None).await;
        let urls: Vec<String> = server["endpoints"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["url"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let (db_max, db_enabled) = (server["pool_max_size"].clone(), server["pool_enabled"].clone());
        within(
            Duration::from_secs(10),
            &format!("seed {seed}: {id} converged"),
            || async {
                // The node may still be reconnecting to Redis right after the last cut.
                let (status, s) = app
                    .admin(Method::GET, &format!("/api/servers/{id}/pool/stats"), None)
                    .await;
                if status != StatusCode::OK {
                    return false;
                }
                let (_, sessions) = app
                    .admin(Method::GET, &format!("/api/servers/{id}/pool/sessions"), None)
                    .await;
                let at_current = sessions["sessions"].as_array().is_some_and(|l| {
                    l.iter()
                        .all(|s| s["endpoint"].as_str().is_some_and(|u| urls.iter().any(|c| c == u)))
                });
                // I1 against the final max: slots beyond a lowered max have left.
                let within_max = s["total_sessions"].as_u64() <= s["enforced_max_size"].as_u64();
                s["enforced_max_size"] == db_max && s["enforced_enabled"] == db_enabled && at_current && within_max
            },
        )
        .await;
        // Capacity back: the pool serves a new client (enabled or not: direct sessions then).
        let mut c = Client::new(&app, id, "after");
        c.initialize().await;
        c.call_ok(1, "echo", json!({"text": "after the churn"})).await;
    }
    let _ = pg.close().await;
    coordinator.stop().await;
    app.stop().await;
}
