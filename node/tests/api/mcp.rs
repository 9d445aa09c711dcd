//! The MCP data plane end to end, driven by Rust: a real node (or two sharing Redis), the
//! project's test upstream, and a minimal Streamable HTTP client (mcp_client.rs).

use std::sync::Arc;
use std::time::Duration;

use poolgate_loadtests::upstream::{Upstream, UpstreamConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{redis_url, Backend, TestApp, TestDb, TEST_SECRET};
use crate::mcp_client::{register, stateless_upstream, two_nodes, unique_prefix, upstream, Client};

/// Session isolation: each client session has an upstream session of its own for its whole life;
/// DELETE closes it upstream and the id is dead afterwards.
#[tokio::test]
async fn session_isolation_end_to_end() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(&app, "iso", &up.url(), json!({"pool_max_size": 4})).await;
    let mut a = Client::new(&app, "iso", "alice");
    let mut b = Client::new(&app, "iso", "alice");
    let init = a.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "poolgate-test-upstream");
    assert_eq!(
        init["result"]["protocolVersion"], "2025-06-18",
        "the client's version is honoured"
    );
    b.initialize().await;
    assert_eq!(a.count(1).await.0, 1);
    assert_eq!(a.count(2).await.0, 2);
    let (b1, b_up) = b.count(1).await;
    let (a3, a_up) = a.count(3).await;
    assert_eq!((b1, a3), (1, 3), "two sessions never share upstream state");
    assert_ne!(a_up, b_up);
    // Streamed answers pass through with their progress notifications.
    let (status, events) = a.call(4, "slow", json!({"ms": 60, "steps": 3})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(events.is_object() || events.is_array(), "{events}");
    let deletes = up.stats().deletes.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(a.delete().await, StatusCode::OK);
    assert_eq!(
        up.stats().deletes.load(std::sync::atomic::Ordering::Relaxed),
        deletes + 1,
        "upstream DELETE observed"
    );
    let (status, body) = a.call(5, "counter", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(a.delete().await, StatusCode::NOT_FOUND);
    // A new session never gets the closed upstream session back (I8).
    let mut c = Client::new(&app, "iso", "alice");
    c.initialize().await;
    let (c1, c_up) = c.count(1).await;
    assert_eq!(c1, 1);
    assert_ne!(c_up, a_up);
    app.stop().await;
}

/// Progress notifications stream to the client in order, before the answer.
#[tokio::test]
async fn progress_streams_before_the_answer() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(&app, "prog", &up.url(), json!({})).await;
    let mut a = Client::new(&app, "prog", "alice");
    a.initialize().await;
    let (status, events, _) = a
        .post(json!({"jsonrpc": "2.0", "id": "p1", "method": "tools/call",
            "params": {"name": "slow", "arguments": {"ms": 90, "steps": 3}, "_meta": {"progressToken": "tok"}}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = events.as_array().expect("an event stream").clone();
    let progress: Vec<u64> = events
        .iter()
        .filter(|e| e["method"] == "notifications/progress")
        .map(|e| {
            assert_eq!(e["params"]["progressToken"], "tok");
            e["params"]["progress"].as_u64().unwrap_or(0)
        })
        .collect();
    assert_eq!(progress, vec![1, 2, 3]);
    assert_eq!(
        events.last().map(|e| e["id"].clone()),
        Some(json!("p1")),
        "answer last: {events:?}"
    );
    app.stop().await;
}

/// Another user's session id, a tampered one and a truncated one are all 404 (I12).
#[tokio::test]
async fn foreign_tampered_and_truncated_ids_are_404() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(&app, "sec", &up.url(), json!({})).await;
    let mut alice = Client::new(&app, "sec", "alice");
    alice.initialize().await;
    let sid = alice.session.clone().expect("session");
    let mut mallory = Client::new(&app, "sec", "bob");
    mallory.session = Some(sid.clone());
    assert_eq!(mallory.call(1, "counter", json!({})).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        mallory.delete().await,
        StatusCode::NOT_FOUND,
        "bob cannot end alice's session"
    );
    let mut flipped = sid.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(flipped).expect("ascii"),
        sid[..sid.len() - 4].to_owned(),
        "garbage".to_owned(),
    ] {
        let mut c = Client::new(&app, "sec", "alice");
        c.session = Some(bad);
        let (status, body) = c.call(1, "counter", json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], -32001);
    }
    // The genuine session is untouched.
    assert_eq!(alice.count(2).await.0, 1);
    // No session header on a non-initialize request: 400.
    let c = Client::new(&app, "sec", "alice");
    assert_eq!(c.call(1, "counter", json!({})).await.0, StatusCode::BAD_REQUEST);
    app.stop().await;
}

/// Two nodes sharing one Redis: a client initializes on A, calls through B and A alternately and
/// deletes through B — one upstream session throughout, closed upstream at the end, never reused.
#[tokio::test]
async fn two_nodes_route_one_session() {
    let up = upstream(UpstreamConfig::default()).await;
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    register(&a, "fleet", &up.url(), json!({"pool_max_size": 3})).await;
    let mut on_a = Client::new(&a, "fleet", "alice");
    on_a.initialize().await;
    let on_b = on_a.via(&b, "fleet");
    let mut seen = Vec::new();
    for (i, c) in [&on_b, &on_a, &on_b, &on_a].iter().enumerate() {
        seen.push(c.count(i as i64 + 1).await);
    }
    let counts: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(counts, vec![1, 2, 3, 4]);
    assert!(seen.iter().all(|s| s.1 == seen[0].1), "one upstream session: {seen:?}");
    let deletes = up.stats().deletes.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(on_b.delete().await, StatusCode::OK);
    // Closing runs in the background: wait for the upstream to see it.
    for _ in 0..100 {
        if up.stats().deletes.load(std::sync::atomic::Ordering::Relaxed) > deletes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        up.stats().deletes.load(std::sync::atomic::Ordering::Relaxed),
        deletes + 1
    );
    assert_eq!(on_a.call(9, "counter", json!({})).await.0, StatusCode::NOT_FOUND);
    let mut next = Client::new(&b, "fleet", "bob");
    next.initialize().await;
    let (n, other) = next.count(1).await;
    assert_eq!(n, 1);
    assert_ne!(other, seen[0].1, "the closed upstream session serves nobody else (I8)");
    b.stop().await;
    a.stop().await;
}

/// 50 concurrent client sessions of two users through two nodes over a pool of 10: sessions
/// churn through the pool, none ever sees another's counter, no upstream session is reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_never_share_upstream_state() {
    let up = upstream(UpstreamConfig::default()).await;
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    register(&a, "busy", &up.url(), json!({"pool_max_size": 10, "pool_timeout": 30})).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            let first = if i % 2 == 0 { &a } else { &b };
            let other = if i % 2 == 0 { &b } else { &a };
            let mut c = Client::new(first, "busy", user);
            c.initialize().await;
            let c2 = c.via(other, "busy");
            let mut ups = Vec::new();
            for n in 1..=3u64 {
                let client = if n % 2 == 0 { &c2 } else { &c };
                let (count, upstream) = client.count(n as i64).await;
                assert_eq!(count, n, "session {i} saw count {count} at call {n}");
                ups.push(upstream);
            }
            assert!(ups.iter().all(|u| *u == ups[0]));
            assert_eq!(c.delete().await, StatusCode::OK);
            ups.remove(0)
        }));
    }
    let mut upstreams = Vec::new();
    for t in tasks {
        upstreams.push(t.await.expect("session task"));
    }
    upstreams.sort();
    upstreams.dedup();
    assert_eq!(
        upstreams.len(),
        50,
        "every client session had an upstream session of its own"
    );
    let initializes = up.stats().initializes.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        initializes, 50,
        "no upstream session was reused after its binding ended"
    );
    if let (Ok(a), Ok(b)) = (Arc::try_unwrap(a), Arc::try_unwrap(b)) {
        b.stop().await;
        a.stop().await;
    }
}

/// A node restarted (new process, same secret) and a node with a rotated secret (old one as
/// fallback) both serve an existing session.
#[tokio::test]
async fn sessions_survive_restart_and_key_rotation() {
    let up = upstream(UpstreamConfig::default()).await;
    let prefix = unique_prefix();
    let (a, b) = two_nodes(&prefix, &[]).await;
    register(&a, "keep", &up.url(), json!({})).await;
    let mut c = Client::new(&a, "keep", "alice");
    c.initialize().await;
    assert_eq!(c.count(1).await.0, 1);
    // Both nodes go; a node with a rotated key comes up on the same database (a's handle owns
    // the database, so a stops last) and Redis.
    b.stop().await;
    let db = TestDb::new_shared(&a.db.url);
    let new_secret = "rotated-secret-rotated-secret-rotated-0123";
    let redis = redis_url();
    let rotated = TestApp::spawn_on(
        db,
        &[
            ("REDIS_URL", redis.as_str()),
            ("REDIS_POOL_PREFIX", prefix.as_str()),
            ("JWT_SECRET_KEY", new_secret),
            ("SESSION_SECRET_FALLBACKS", TEST_SECRET),
        ],
        &[],
    )
    .await
    .wait_ready()
    .await;
    let moved = c.via(&rotated, "keep");
    assert_eq!(
        moved.count(2).await.0,
        2,
        "the old session id still routes to its upstream session"
    );
    rotated.stop().await;
    a.stop().await;
}

/// Shared isolation, pool of 2 with capacity 1: a third slow call waits for a release and
/// succeeds; with a short pool_timeout it fails with the exhaustion error instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_waits_then_times_out() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = Arc::new(TestApp::spawn(Backend::Sqlite).await);
    register(
        &app,
        "tight",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 2, "pool_timeout": 5}),
    )
    .await;
    let run = |ms: u64| {
        let app = app.clone();
        async move {
            let mut c = Client::new(&app, "tight", "alice");
            c.initialize().await;
            let started = std::time::Instant::now();
            let (status, body) = c.call(1, "slow", json!({"ms": ms})).await;
            (status, body, started.elapsed())
        }
    };
    let results = futures_util::future::join_all((0..3).map(|_| run(400))).await;
    for (status, body, _) in &results {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert!(body["result"].is_object(), "{body}");
    }
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    assert!(
        slowest >= Duration::from_millis(750),
        "the third call waited for a release: {slowest:?}"
    );

    app.admin(
        reqwest::Method::PUT,
        "/api/servers/tight/pool/config",
        Some(json!({"pool_timeout": 1})),
    )
    .await;
    let results = futures_util::future::join_all((0..3).map(|_| run(2500))).await;
    let exhausted: Vec<&Value> = results
        .iter()
        .filter(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE)
        .map(|r| &r.1)
        .collect();
    assert_eq!(exhausted.len(), 1, "{results:?}");
    assert_eq!(exhausted[0]["error"]["code"], -32002, "{}", exhausted[0]);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

/// I9: two clients sending the same request id at the same instant over one shared upstream
/// session each get their own answer; a client re-using an id still in flight gets an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_never_cross() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(
        &app,
        "ids",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 1, "pool_session_capacity": 2}),
    )
    .await;
    let mut c1 = Client::new(&app, "ids", "alice");
    let mut c2 = Client::new(&app, "ids", "bob");
    c1.initialize().await;
    c2.initialize().await;
    let (r1, r2) = tokio::join!(
        c1.call(7, "echo", json!({"text": "one"})),
        c2.call(7, "echo", json!({"text": "two"}))
    );
    assert_eq!((r1.1["id"].clone(), r2.1["id"].clone()), (json!(7), json!(7)));
    assert_eq!(r1.1["result"]["structuredContent"]["text"], "one", "{}", r1.1);
    assert_eq!(r2.1["result"]["structuredContent"]["text"], "two", "{}", r2.1);
    assert_eq!(
        up.stats().initializes.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one shared upstream session"
    );

    let mut bound = Client::new(&app, "ids", "carol");
    bound.initialize().await;
    let slow = bound.call(8, "slow", json!({"ms": 500}));
    let dup = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bound.call(8, "echo", json!({"text": "dup"})).await
    };
    let (first, second) = tokio::join!(slow, dup);
    assert_eq!(first.0, StatusCode::OK);
    assert!(first.1["result"].is_object(), "{}", first.1);
    assert_eq!(second.1["error"]["code"], -32004, "{}", second.1);
    app.stop().await;
}

/// Upstream down: clear JSON-RPC errors, no hang. Upstream restarted (its sessions lost): a
/// session-isolated client gets 404 and re-initializes successfully; in shared isolation the
/// request is replayed once on a fresh upstream session and the client never notices.
#[tokio::test]
async fn upstream_down_and_restarted() {
    let up = upstream(UpstreamConfig::default()).await;
    let addr = up.addr;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(&app, "bound", &up.url(), json!({})).await;
    register(
        &app,
        "shared",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_pre_ping": false}),
    )
    .await;
    let mut bound = Client::new(&app, "bound", "alice");
    bound.initialize().await;
    let mut shared = Client::new(&app, "shared", "alice");
    shared.initialize().await;
    assert_eq!(bound.count(1).await.0, 1);
    assert_eq!(shared.call(1, "echo", json!({"text": "a"})).await.0, StatusCode::OK);

    up.stop().await;
    for c in [&bound, &shared] {
        let started = std::time::Instant::now();
        let (status, body) = c.call(2, "echo", json!({"text": "down"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], 2);
        assert_eq!(body["error"]["code"], -32003, "a clear JSON-RPC error: {body}");
        assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    }

    // The same address comes back as a fresh server: every old upstream session is gone.
    let again = Upstream::start(addr, UpstreamConfig::default())
        .await
        .expect("restart on the same port");
    let (status, body) = bound.call(3, "counter", json!({})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "session isolation: the client must re-initialize: {body}"
    );
    bound.initialize().await;
    assert_eq!(
        bound.count(4).await.0,
        1,
        "a new upstream session after re-initializing"
    );
    let (status, body) = shared.call(5, "echo", json!({"text": "replayed"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["text"], "replayed",
        "shared isolation replays once: {body}"
    );
    assert!(again.stats().initializes.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    app.stop().await;
}

/// Session-era clients over a sessionless (2026-07-28) upstream: `initialize` is answered from the
/// upstream's `server/discover`, there is no upstream handshake, every forwarded request carries
/// the revision's `_meta` and routing headers (the test upstream refuses anything else), and slots
/// are concurrency slots — no client session holds one, so more sessions than slots work.
#[tokio::test]
async fn session_era_clients_over_a_sessionless_upstream() {
    let up = stateless_upstream().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(&app, "modern", &up.url(), json!({"pool_max_size": 2})).await;
    let mut a = Client::new(&app, "modern", "alice");
    let init = a.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "poolgate-test-upstream");
    assert_eq!(
        init["result"]["protocolVersion"], "2025-06-18",
        "the client keeps its own revision"
    );
    assert_eq!(init["result"]["instructions"], "stateless test upstream");
    let (status, tools, _) = a.post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    assert_eq!(status, StatusCode::OK, "{tools}");
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo") && names.contains(&"counter"), "{names:?}");
    let (status, body) = a.call(2, "echo", json!({"text": "over 2026"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["structuredContent"]["text"], "over 2026");
    // Four client sessions over two concurrency slots: none holds a slot between requests.
    for i in 0..4 {
        let mut c = Client::new(&app, "modern", if i % 2 == 0 { "alice" } else { "bob" });
        c.initialize().await;
        let (status, body) = c.call(3, "echo", json!({"text": format!("c{i}")})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["result"]["structuredContent"]["text"], format!("c{i}"));
        assert_eq!(c.delete().await, StatusCode::OK);
    }
    let stats = up.stats();
    assert_eq!(
        stats.refused.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "every request had the 2026 _meta and headers"
    );
    assert_eq!(
        stats.initializes.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no handshake upstream"
    );
    assert!(stats.discovers.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    app.stop().await;
}

/// One 2026-07-28 request (no session): the revision's `_meta` and routing headers.
async fn modern(
    app: &TestApp,
    server: &str,
    user: &str,
    id: i64,
    method: &str,
    mut params: Value,
) -> (StatusCode, Value) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let mut req = reqwest::Client::new()
        .post(app.url(&format!("/servers/{server}/mcp")))
        .bearer_auth(app.token(user, &["reader"], &[], 600))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        req = req.header("mcp-name", name);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The compatibility matrix (README): client revision × upstream revision × isolation. Every
/// cell is exercised: a 2026-07-28 client discovers and calls tools, a session-era client
/// initializes and calls tools; answers to 2026 clients carry `resultType`, cacheable ones
/// `ttlMs`/`cacheScope`; behind a session-era upstream in session isolation a 2026 user keeps one
/// upstream session (its counter continues) and users never share one.
#[tokio::test]
async fn compatibility_matrix() {
    let session_era = upstream(UpstreamConfig::default()).await;
    let sessionless = stateless_upstream().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (up, era) in [(&session_era, "s"), (&sessionless, "m")] {
        for isolation in ["session", "shared"] {
            let id = format!("{era}-{isolation}");
            register(
                &app,
                &id,
                &up.url(),
                json!({"pool_isolation": isolation, "pool_max_size": 4}),
            )
            .await;
            // A 2026-07-28 client.
            let (status, discover) = modern(&app, &id, "alice", 1, "server/discover", json!({})).await;
            assert_eq!(status, StatusCode::OK, "{id}: {discover}");
            assert_eq!(discover["result"]["supportedVersions"], json!(["2026-07-28"]), "{id}");
            assert_eq!(
                discover["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
                "poolgate-test-upstream"
            );
            assert_eq!(discover["result"]["resultType"], "complete");
            let (status, tools) = modern(&app, &id, "alice", 2, "tools/list", json!({})).await;
            assert_eq!(status, StatusCode::OK, "{id}: {tools}");
            assert!(
                tools["result"]["tools"].as_array().is_some_and(|t| t.len() == 4),
                "{id}: {tools}"
            );
            assert_eq!(
                (tools["result"]["ttlMs"].clone(), tools["result"]["cacheScope"].clone()),
                (json!(0), json!("private"))
            );
            let (status, echo) = modern(
                &app,
                &id,
                "alice",
                3,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": id}}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{id}: {echo}");
            assert_eq!(echo["id"], 3);
            assert_eq!(echo["result"]["structuredContent"]["text"], json!(id));
            assert_eq!(echo["result"]["resultType"], "complete");
            if era == "s" && isolation == "session" {
                // One upstream session per user, consistent across requests; users never share.
                let count = |v: &Value| v["result"]["structuredContent"]["count"].as_u64();
                let mut counted = Vec::new();
                for (user, rpc_id) in [("alice", 4), ("alice", 5), ("bob", 6)] {
                    let call = json!({"name": "counter", "arguments": {}});
                    counted.push(modern(&app, &id, user, rpc_id, "tools/call", call).await.1);
                }
                let [a1, a2, b1] = <[Value; 3]>::try_from(counted).expect("three answers");
                assert_eq!(
                    (count(&a1), count(&a2), count(&b1)),
                    (Some(1), Some(2), Some(1)),
                    "{a1} {a2} {b1}"
                );
                assert_eq!(
                    a1["result"]["structuredContent"]["session"],
                    a2["result"]["structuredContent"]["session"]
                );
                assert_ne!(
                    a1["result"]["structuredContent"]["session"],
                    b1["result"]["structuredContent"]["session"]
                );
            }
            // A session-era client.
            let mut c = Client::new(&app, &id, "carol");
            let init = c.initialize().await;
            assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{id}");
            let (status, body) = c.call(9, "echo", json!({"text": "old"})).await;
            assert_eq!(
                (status, body["result"]["structuredContent"]["text"].clone()),
                (StatusCode::OK, json!("old")),
                "{id}: {body}"
            );
            assert_eq!(c.delete().await, StatusCode::OK);
        }
    }
    assert_eq!(
        sessionless.stats().refused.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    app.stop().await;
}

/// Warm-up: the node (embedded mode runs the coordinator's loops) keeps `pool_min_size` idle,
/// initialized upstream sessions ready, so a new client's `initialize` pays no upstream
/// handshake; after it takes one, the pool is refilled.
#[tokio::test]
async fn warm_sessions_spare_clients_the_handshake() {
    let up = upstream(UpstreamConfig {
        handshake: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let app = TestApp::spawn_with(Backend::Sqlite, &[("POOL_MANAGER_CLEANUP_INTERVAL", "1")], &[]).await;
    register(&app, "warm", &up.url(), json!({"pool_min_size": 2, "pool_max_size": 5})).await;
    let inits = || up.stats().initializes.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while inits() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "warm-up never created the minimum"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(inits(), 2, "exactly pool_min_size idle sessions, not more");
    let mut c = Client::new(&app, "warm", "alice");
    let started = std::time::Instant::now();
    c.initialize().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(300),
        "initialize paid a handshake: {took:?}"
    );
    assert_eq!(inits(), 2, "the client got a warm session");
    assert_eq!(c.count(1).await.0, 1);
    // The pool refills to two idle sessions.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while inits() < 3 {
        assert!(std::time::Instant::now() < deadline, "warm-up did not refill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// Stats (seed 001 fields), sessions and pool health after a scripted sequence.
#[tokio::test]
async fn stats_sessions_and_health_after_a_scripted_sequence() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(
        &app,
        "ops",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 3, "pool_strategy": "least_connections"}),
    )
    .await;
    let mut c = Client::new(&app, "ops", "alice");
    c.initialize().await; // one acquisition: creates the slot, releases it
    for i in 0..3 {
        assert_eq!(c.call(i, "echo", json!({"text": "x"})).await.0, StatusCode::OK);
    }
    let (status, stats) = app
        .admin(reqwest::Method::GET, "/api/servers/ops/pool/stats", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    for field in [
        "pool_id",
        "server_id",
        "strategy",
        "status",
        "total_sessions",
        "active_sessions",
        "available_sessions",
        "unhealthy_sessions",
        "min_size",
        "max_size",
        "total_acquisitions",
        "total_releases",
        "total_timeouts",
        "total_creates",
        "total_destroys",
    ] {
        assert!(stats.get(field).is_some(), "seed field {field} missing: {stats}");
    }
    assert!(
        stats["pool_id"].as_str().is_some_and(|p| p.starts_with("pool-")),
        "{stats}"
    );
    assert_eq!(
        (
            stats["server_id"].clone(),
            stats["strategy"].clone(),
            stats["status"].clone(),
            stats["total_sessions"].clone(),
            stats["active_sessions"].clone(),
            stats["available_sessions"].clone(),
            stats["unhealthy_sessions"].clone(),
            stats["min_size"].clone(),
            stats["max_size"].clone(),
        ),
        (
            json!("ops"),
            json!("least_connections"),
            json!("active"),
            json!(1),
            json!(0),
            json!(1),
            json!(0),
            json!(0),
            json!(3)
        ),
        "{stats}"
    );
    assert_eq!(
        (
            stats["total_acquisitions"].clone(),
            stats["total_releases"].clone(),
            stats["total_timeouts"].clone(),
            stats["total_creates"].clone(),
            stats["total_destroys"].clone(),
        ),
        (json!(4), json!(4), json!(0), json!(1), json!(0)),
        "{stats}"
    );
    let (_, sessions) = app
        .admin(reqwest::Method::GET, "/api/servers/ops/pool/sessions", None)
        .await;
    let list = sessions["sessions"].as_array().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0]["reuse_count"].clone(), list[0]["state"].clone()),
        (json!(4), json!("ready"))
    );
    assert!(
        !sessions.to_string().contains("session_id"),
        "upstream session ids are not shown"
    );
    let (status, health) = app
        .call(
            reqwest::Method::GET,
            "/api/servers/pools/health",
            Some(&app.reader_token()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (health["overall_health"].clone(), health["degraded_pools"].clone()),
        (json!("healthy"), json!(0)),
        "{health}"
    );
    assert_eq!(health["pools"][0]["health_score"], 1.0);
    app.stop().await;
}

/// Health checks: with the upstream stopped, the idle sessions fail their pings, are removed,
/// and the pool's health score drops (overall unhealthy); when the upstream returns, warm-up
/// recreates the sessions and the next pass brings the score back to 1.
#[tokio::test]
async fn health_checks_follow_the_upstream_down_and_back() {
    let up = upstream(UpstreamConfig::default()).await;
    let addr = up.addr;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("POOL_MANAGER_CLEANUP_INTERVAL", "1"),
            ("POOL_MANAGER_HEALTH_CHECK_INTERVAL", "1"),
        ],
        &[],
    )
    .await;
    register(&app, "hc", &up.url(), json!({"pool_min_size": 2, "pool_max_size": 4})).await;
    let health = || async {
        let (_, h) = app
            .call(
                reqwest::Method::GET,
                "/api/servers/pools/health",
                Some(&app.reader_token()),
                None,
            )
            .await;
        h
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.stats().initializes.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        assert!(std::time::Instant::now() < deadline, "warm-up never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    up.stop().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let down = loop {
        let h = health().await;
        if h["overall_health"] == "unhealthy" {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "health never dropped: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        down["pools"][0]["health_score"].as_f64().is_some_and(|s| s < 0.5),
        "{down}"
    );
    let (_, stats) = app
        .admin(reqwest::Method::GET, "/api/servers/hc/pool/stats", None)
        .await;
    assert_eq!(stats["available_sessions"], 0, "failed sessions are removed: {stats}");

    let again = Upstream::start(addr, UpstreamConfig::default())
        .await
        .expect("upstream back");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let back = loop {
        let h = health().await;
        if h["overall_health"] == "healthy" && h["pools"][0]["health_score"] == 1.0 {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "health never recovered: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(back["degraded_pools"], 0);
    // Health follows the endpoint probe; warm-up recreates the sessions on its next pass.
    while again.stats().initializes.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "warm-up never recreated the sessions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// Drain waits for in-flight work (which completes) and reports nothing left; reset retires every
/// session, and the next request gets a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_active_calls_and_reset_retires_everything() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = Arc::new(TestApp::spawn(Backend::Sqlite).await);
    register(
        &app,
        "dr",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 2}),
    )
    .await;
    let mut c = Client::new(&app, "dr", "alice");
    c.initialize().await;
    let slow = {
        let app = app.clone();
        let session = c.session.clone();
        tokio::spawn(async move {
            let mut c = Client::new(&app, "dr", "alice");
            c.session = session;
            c.call(1, "slow", json!({"ms": 800})).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (status, drained) = app
        .admin(
            reqwest::Method::POST,
            "/api/servers/dr/pool/drain",
            Some(json!({"timeout": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{drained}");
    assert_eq!(
        (drained["drained"].clone(), drained["active_leases"].clone()),
        (json!(true), json!(0)),
        "{drained}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "drain returned before the call ended"
    );
    let (status, body) = slow.await.expect("slow call");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["result"].is_object(), "the in-flight call completed: {body}");
    let (status, bad) = app
        .admin(
            reqwest::Method::POST,
            "/api/servers/dr/pool/drain",
            Some(json!({"timeout": 99999})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    let (status, reset) = app
        .admin(reqwest::Method::POST, "/api/servers/dr/pool/reset", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let (_, stats) = app
        .admin(reqwest::Method::GET, "/api/servers/dr/pool/stats", None)
        .await;
    assert_eq!(
        stats["total_sessions"], 0,
        "every idle session was retired and closed: {stats}"
    );
    let (status, body) = c.call(2, "echo", json!({"text": "after reset"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["structuredContent"]["text"], "after reset");
    let (status, _) = app
        .call(
            reqwest::Method::POST,
            "/api/servers/dr/pool/reset",
            Some(&app.reader_token()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "reset is an admin operation");
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

/// Disabling a pool drains it gracefully: a call in flight when the pool is disabled completes,
/// the idle session is closed, the busy one leaves once its call ends, and new calls still work
/// (without the pool).
#[tokio::test]
async fn disabling_a_pool_drains_it_gracefully() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(
        &app,
        "off",
        &up.url(),
        json!({"pool_max_size": 2, "pool_isolation": "shared", "pool_session_capacity": 1}),
    )
    .await;
    let mut first = Client::new(&app, "off", "alice");
    first.initialize().await;
    let mut bob = Client::new(&app, "off", "bob");
    bob.initialize().await;
    // Two sessions in the pool: one busy with a slow call, one idle.
    let stats = || async {
        app.admin(reqwest::Method::GET, "/api/servers/off/pool/stats", None)
            .await
            .1
    };
    let slow = {
        let c = first.via(&app, "off");
        tokio::spawn(async move { c.call(7, "slow", json!({"ms": 800})).await })
    };
    while stats().await["active_sessions"] != 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bob.call_ok(2, "echo", json!({"text": "fill"})).await;
    assert_eq!(stats().await["total_sessions"], 2);
    let (status, _) = app
        .admin(
            reqwest::Method::PUT,
            "/api/servers/off/pool/config",
            Some(json!({"pool_enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let now = stats().await;
    assert_eq!(now["active_sessions"], 1, "{now}");
    assert_eq!(now["total_sessions"], 1, "the idle session closed at once: {now}");
    let (status, body) = slow.await.expect("task");
    assert_eq!(status, StatusCode::OK);
    let answer = match body {
        Value::Array(mut events) => events.pop().unwrap_or(Value::Null),
        b => b,
    };
    assert!(answer["result"].is_object(), "the call in flight completed: {answer}");
    // The busy session left the pool when its call ended.
    let mut left = Value::Null;
    for _ in 0..50 {
        left = stats().await;
        if left["total_sessions"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left["total_sessions"], 0, "{left}");
    // New clients still get served (a session of their own, outside the pool).
    let mut later = Client::new(&app, "off", "carol");
    later.initialize().await;
    later.call_ok(3, "echo", json!({"text": "still here"})).await;
    app.stop().await;
}
