//! The slot lifecycle as clients see it: the one open-an-upstream-session path (node and warm-up
//! alike) and the one release per lease.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use poolgate_loadtests::upstream::UpstreamConfig;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{redis_url, Backend, TestApp, TestDb};
use crate::mcp_client::{register, stateless_upstream, unique_prefix, upstream, Client};
use crate::metrics::scrape;

/// A session-era client whose `initialize` is served from a slot the leader's warm-up created for
/// a sessionless (2026-07-28) upstream gets a session-era initialize result — `serverInfo`
/// included — exactly as from a slot the node created itself: warm-up and the node open upstream
/// sessions through the same path.
#[tokio::test]
async fn a_warm_slot_of_a_sessionless_upstream_gives_session_era_clients_server_info() {
    let up = stateless_upstream().await;
    let app = TestApp::spawn_with(Backend::Sqlite, &[("POOL_MANAGER_CLEANUP_INTERVAL", "1")], &[]).await;
    register(
        &app,
        "warm26",
        &up.url(),
        json!({"pool_min_size": 1, "pool_max_size": 3}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, stats) = app
            .admin(reqwest::Method::GET, "/api/servers/warm26/pool/stats", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        if stats["total_sessions"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "warm-up never created the slot: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = Client::new(&app, "warm26", "alice");
    let init = c.initialize().await;
    let result = &init["result"];
    assert_eq!(result["serverInfo"]["name"], "poolgate-test-upstream", "{init}");
    assert_eq!(result["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(result["capabilities"]["tools"]["listChanged"], false, "{init}");
    assert_eq!(result["instructions"], "stateless test upstream", "{init}");
    assert!(
        result.get("supportedVersions").is_none(),
        "a raw server/discover result, not an initialize result: {init}"
    );
    // The warm slot served it: no slot beyond the warm one was created.
    let (_, stats) = app
        .admin(reqwest::Method::GET, "/api/servers/warm26/pool/stats", None)
        .await;
    assert_eq!(stats["total_creates"], 1, "{stats}");
    assert_eq!(
        c.call_ok(1, "echo", json!({"text": "hi"})).await["content"][0]["text"],
        "hi"
    );
    app.stop().await;
}

/// Shared isolation, one slot: each time the upstream loses its sessions, the request that finds
/// its session gone retires the slot in its lease's one release, and the replay runs on a fresh
/// slot — never on the dead one again (with two releases, one of them not retiring, the dead slot
/// could go back to the pool and be picked for the replay). On the embedded plane and on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_shared_session_is_retired_before_the_replay() {
    let embedded = TestApp::spawn(Backend::Sqlite).await;
    lost_sessions_never_replayed_on(&embedded).await;
    embedded.stop().await;
    let redis = redis_url();
    let prefix = unique_prefix();
    let db = TestDb::new(Backend::Postgres).await;
    let distributed = TestApp::spawn_on(db, &[("REDIS_URL", &redis), ("REDIS_POOL_PREFIX", &prefix)], &[])
        .await
        .wait_ready()
        .await;
    lost_sessions_never_replayed_on(&distributed).await;
    distributed.stop().await;
}

async fn lost_sessions_never_replayed_on(app: &TestApp) {
    const ROUNDS: i64 = 100;
    let up = upstream(UpstreamConfig::default()).await;
    register(
        app,
        "lost",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 1, "pool_pre_ping": false}),
    )
    .await;
    let mut c = Client::new(app, "lost", "alice");
    c.initialize().await;
    let inits = || up.stats().initializes.load(Ordering::Relaxed);
    assert_eq!(inits(), 1);
    for round in 1..=ROUNDS {
        assert_eq!(
            up.forget_sessions(),
            1,
            "round {round}: one upstream session, the pool's only slot"
        );
        let text = format!("round {round}");
        let (status, answer) = c.call(round, "echo", json!({ "text": text })).await;
        assert_eq!(status, StatusCode::OK, "round {round}: {answer}");
        assert_eq!(answer["result"]["content"][0]["text"], text, "round {round}: {answer}");
        assert_eq!(answer["id"], round, "{answer}");
    }
    assert_eq!(
        inits() as i64,
        1 + ROUNDS,
        "one replacement session per lost one, no other attempt"
    );
    // One release per lease, carrying the request's outcome: the initialize lease, then per
    // round the lost attempt (retired, its request time recorded) and the replay.
    let releases = 1 + 2 * ROUNDS;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = app
            .admin(reqwest::Method::GET, "/api/servers/lost/pool/stats", None)
            .await;
        if stats["total_releases"].as_i64() == Some(releases) {
            assert_eq!(stats["total_creates"].as_i64(), Some(1 + ROUNDS), "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "releases never reached {releases}: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = scrape(app).await;
    let timed = metrics
        .iter()
        .find(|(k, _)| k.starts_with("poolgate_pool_request_duration_seconds_count") && k.contains("\"lost\""))
        .map(|(_, v)| *v);
    assert_eq!(
        timed,
        Some((2 * ROUNDS) as f64),
        "every leased request's time is in its one release, the lost attempts' included"
    );
    up.stop().await;
}
