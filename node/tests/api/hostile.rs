//! Upstreams the gateway does not control (issue: untrusted upstreams). Each hostile answer of
//! `poolgate_loadtests::hostile` — oversized SSE events and JSON bodies, endless streams, huge
//! error pages, headers that never end, silence, garbage, a wrong content type, a session that
//! vanishes mid-stream — gets the client a clear JSON-RPC error within a bounded time, while the
//! node's peak memory stays within the configured limits and other clients are served. Client
//! mistakes (a tool the upstream refuses, an unknown method, a control character in a routing
//! header) never cost the pool a session; endpoint breakers, pool health and the leader's passes
//! follow what upstreams actually do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolgate_loadtests::hostile::Hostile;
use poolgate_loadtests::upstream::{Upstream, UpstreamConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::mcp_client::{register, register_endpoints, stateless_upstream, upstream, Client};
use crate::poolctl::poolctl;

/// Peak resident memory of this test process (nextest runs each test in its own process).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// The JSON-RPC answer of a call: the JSON body, or the last event of a stream.
fn answer(body: Value) -> Value {
    match body {
        Value::Array(mut events) => events.pop().unwrap_or(Value::Null),
        other => other,
    }
}

async fn pool_stats(app: &TestApp, id: &str) -> Value {
    let (status, stats) = app
        .admin(Method::GET, &format!("/api/servers/{id}/pool/stats"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats
}

const LIMIT: u64 = 1024 * 1024;
const EVENT_LIMIT: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_get_clear_errors_in_bounded_time_and_memory() {
    let hostile = Hostile::start().await.expect("hostile upstream");
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("UPSTREAM_MAX_RESPONSE_BYTES", &LIMIT.to_string()),
            ("UPSTREAM_MAX_EVENT_BYTES", &EVENT_LIMIT.to_string()),
            ("UPSTREAM_REQUEST_TIMEOUT", "3"),
        ],
        &[],
    )
    .await;
    register(
        &app,
        "hostile",
        &hostile.url(),
        json!({"pool_isolation": "shared", "pool_session_capacity": 8, "pool_max_size": 4}),
    )
    .await;
    let mut client = Client::new(&app, "hostile", "mallory");
    client.initialize().await;
    client.call_ok(1, "echo", json!({"text": "warm"})).await;
    let baseline = peak_rss_bytes();

    // Another client of the same node, served all along.
    let mut bystander = Client::new(&app, "hostile", "bob");
    bystander.initialize().await;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let meanwhile = {
        let (stop, served) = (stop.clone(), served.clone());
        tokio::spawn(async move {
            let mut id = 100;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let started = Instant::now();
                let result = bystander.call_ok(id, "echo", json!({"text": "still here"})).await;
                assert_eq!(result["content"][0]["text"], "still here");
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "bystander waited {:?}",
                    started.elapsed()
                );
                served.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // (tool, arguments, what the error message must name)
    let cases = [
        ("huge_event", json!({"mib": 64}), "UPSTREAM_MAX_EVENT_BYTES"),
        ("huge_line", json!({"mib": 64}), "UPSTREAM_MAX_EVENT_BYTES"),
        ("endless", json!({"interval_ms": 0}), "UPSTREAM_MAX_RESPONSE_BYTES"),
        ("huge_json", json!({"mib": 64}), "UPSTREAM_MAX_RESPONSE_BYTES"),
        ("huge_json_chunked", json!({"mib": 64}), "UPSTREAM_MAX_RESPONSE_BYTES"),
        ("huge_error", json!({"mib": 64}), "HTTP 500"),
        ("huge_error_chunked", json!({"mib": 64}), "HTTP 500"),
        ("slow_headers", json!({}), "did not answer within 3s"),
        ("silent", json!({}), "did not answer within 3s"),
        ("garbage", json!({}), "upstream"),
        ("wrong_type", json!({}), "not JSON"),
        ("vanish", json!({}), "upstream"),
    ];
    for (i, (tool, args, names)) in cases.into_iter().enumerate() {
        let started = Instant::now();
        let (status, body) = client.call(i as i64 + 10, tool, args).await;
        let took = started.elapsed();
        let body = answer(body);
        assert_eq!(status, StatusCode::OK, "{tool}: {body}");
        assert_eq!(body["id"], i as i64 + 10, "{tool}: {body}");
        assert_eq!(body["error"]["code"], -32003, "{tool}: a JSON-RPC error: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{tool}: the error names {names:?}: {message}");
        assert!(message.len() < 400, "{tool}: error bodies are summarized: {message}");
        assert!(took < Duration::from_secs(8), "{tool}: answered after {took:?}");
        // Whatever the upstream did, the next call on this node works.
        client.call_ok(i as i64 + 1000, "echo", json!({"text": "again"})).await;
    }
    stop.store(true, Ordering::Relaxed);
    meanwhile.await.expect("the bystander was served throughout");
    assert!(
        served.load(Ordering::Relaxed) >= 5,
        "bystander calls: {}",
        served.load(Ordering::Relaxed)
    );

    // The hostile answers offered 64 MiB each; the node read at most a limit of each. Allow
    // the limit plus a margin for the allocator and the runtime, far below one answer.
    let grown = peak_rss_bytes().saturating_sub(baseline);
    eprintln!("peak RSS grew by {} KiB over the hostile answers", grown / 1024);
    assert!(
        grown < LIMIT + 24 * 1024 * 1024,
        "peak RSS grew by {} MiB",
        grown / (1024 * 1024)
    );
    app.stop().await;
}

#[tokio::test]
async fn client_mistakes_never_cost_the_pool_a_session() {
    let hostile = Hostile::start().await.expect("hostile upstream");
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(
        &app,
        "h",
        &hostile.url(),
        json!({"pool_isolation": "shared", "pool_session_capacity": 4, "pool_max_size": 2}),
    )
    .await;
    let mut client = Client::new(&app, "h", "carol");
    client.initialize().await;
    client.call_ok(1, "echo", json!({"text": "x"})).await;
    let before = pool_stats(&app, "h").await;

    // The upstream's JSON-RPC error passes through as it is.
    let (status, body) = client.call(2, "jsonrpc_error", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::OK, json!(-32601)),
        "{body}"
    );
    // A 4xx with a JSON-RPC error: relayed with its status and error object, id mapped back.
    let (status, body) = client.call(3, "bad_request", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        (body["id"].clone(), body["error"]["code"].clone()),
        (json!(3), json!(-32602)),
        "{body}"
    );
    // A method the upstream does not know; a tool name with a control character.
    let (_, body, _) = client
        .post(json!({"jsonrpc": "2.0", "id": 4, "method": "nope/never"}))
        .await;
    assert_eq!(body["error"]["code"], -32601, "{body}");
    let (_, body) = client.call(5, "bad\u{1}name", json!({})).await;
    assert!(body["error"].is_object(), "{body}");
    client.call_ok(6, "echo", json!({"text": "still fine"})).await;

    let after = pool_stats(&app, "h").await;
    assert_eq!(after["total_destroys"], before["total_destroys"], "{after}");
    assert_eq!(after["total_creates"], before["total_creates"], "{after}");
    assert_eq!(after["unhealthy_sessions"], 0, "{after}");

    // The control: an upstream failure (5xx) does count against the session.
    let (_, body) = client.call(7, "server_error", json!({})).await;
    assert_eq!(body["error"]["code"], -32003, "{body}");
    let failed = pool_stats(&app, "h").await;
    assert_eq!(
        failed["total_destroys"].as_u64(),
        before["total_destroys"].as_u64().map(|n| n + 1),
        "{failed}"
    );
    app.stop().await;
}

/// A routing header value that HTTP cannot carry is the client's 400, and the sessionless
/// upstream's slot stays.
#[tokio::test]
async fn a_control_character_in_a_routed_name_is_the_clients_error() {
    let up = stateless_upstream().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(
        &app,
        "s",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 2}),
    )
    .await;
    let mut client = Client::new(&app, "s", "dave");
    client.initialize().await;
    client.call_ok(1, "echo", json!({"text": "x"})).await;
    let before = pool_stats(&app, "s").await;
    let (status, body) = client.call(2, "echo\u{1}", json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], -32602, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("mcp-name") && msg.contains("control character"), "{msg}");
    client.call_ok(3, "echo", json!({"text": "y"})).await;
    let after = pool_stats(&app, "s").await;
    assert_eq!(after["total_destroys"], before["total_destroys"], "{after}");
    app.stop().await;
}

async fn breaker_state(app: &TestApp, server: &str, url: &str) -> Option<u8> {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = format!("mcp_gateway_circuit_breaker_state{{server_id=\"{server}\",endpoint=\"{url}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// One endpoint of two down: after the threshold new sessions go to the live one; the breaker
/// shows on /metrics; once the endpoint is back a health-check probe closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_sends_new_sessions_to_the_live_endpoint_and_closes_again() {
    let down = upstream(UpstreamConfig::default()).await;
    let down_addr = down.addr;
    let down_url = down.url();
    down.stop().await;
    let live = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("UPSTREAM_BREAKER_THRESHOLD", "2"),
            ("UPSTREAM_BREAKER_OPEN_SECONDS", "1"),
            ("POOL_MANAGER_HEALTH_CHECK_INTERVAL", "1"),
        ],
        &[],
    )
    .await;
    register_endpoints(
        &app,
        "br",
        json!([{"url": down_url}, {"url": live.url()}]),
        json!({"pool_isolation": "session", "pool_max_size": 20}),
    )
    .await;
    assert_eq!(breaker_state(&app, "br", &down_url).await, Some(0));
    let mut failures = 0;
    let mut clients = Vec::new();
    for i in 0..8 {
        let mut c = Client::new(&app, "br", &format!("user{i}"));
        let (_, body, sid) = c
            .post(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
            .await;
        match sid {
            Some(sid) if body["result"].is_object() => {
                c.session = Some(sid);
                clients.push(c);
            }
            _ => {
                assert!(i < 2, "only the first {i} sessions may fail: {body}");
                failures += 1;
            }
        }
    }
    // The threshold is 2 failures in a row: client creations (and, if one ran meanwhile, a
    // health-check probe) reach it, then every session goes to the live endpoint.
    assert!((1..=2).contains(&failures), "{failures} sessions failed");
    for (i, c) in clients.iter().enumerate() {
        c.call_ok(i as i64 + 1, "echo", json!({"text": "live"})).await;
    }
    // /metrics caches the fleet-wide text for 2 s.
    let deadline = Instant::now() + Duration::from_secs(4);
    while breaker_state(&app, "br", &down_url).await != Some(1) {
        assert!(Instant::now() < deadline, "the open breaker never showed on /metrics");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, health) = app
        .call(
            Method::GET,
            "/api/servers/pools/health",
            Some(&app.reader_token()),
            None,
        )
        .await;
    assert_eq!(health["pools"][0]["circuit_breakers"][0]["state"], "open", "{health}");
    assert_ne!(health["overall_health"], "healthy", "{health}");

    let back = Upstream::start(down_addr, UpstreamConfig::default())
        .await
        .expect("the endpoint returns");
    let deadline = Instant::now() + Duration::from_secs(10);
    while breaker_state(&app, "br", &down_url).await != Some(0) {
        assert!(Instant::now() < deadline, "the breaker never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Closed: new sessions reach the returned endpoint again.
    for i in 0..4 {
        Client::new(&app, "br", &format!("later{i}")).initialize().await;
    }
    assert!(
        back.stats().initializes.load(Ordering::Relaxed) >= 1,
        "new sessions at the returned endpoint"
    );
    app.stop().await;
}

/// An upstream that is down makes its pool unhealthy within one health-check interval even
/// when the pool holds no session at all, and `poolctl health` says so; both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pool_with_its_upstream_down_is_not_healthy() {
    let up = upstream(UpstreamConfig::default()).await;
    let addr = up.addr;
    let url = up.url();
    up.stop().await;
    let app = TestApp::spawn_with(Backend::Sqlite, &[("POOL_MANAGER_HEALTH_CHECK_INTERVAL", "1")], &[]).await;
    register(&app, "empty", &url, json!({"pool_min_size": 0})).await;
    let health = || async {
        let (_, h) = app
            .call(
                Method::GET,
                "/api/servers/pools/health",
                Some(&app.reader_token()),
                None,
            )
            .await;
        h
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let h = loop {
        let h = health().await;
        if h["overall_health"] != "healthy" {
            break h;
        }
        assert!(Instant::now() < deadline, "still healthy: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(h["pools"][0]["total_sessions"], 0, "{h}");
    assert!(h["pools"][0]["failed_probes"].as_u64() >= Some(1), "{h}");
    let (code, out, err) = poolctl(&app, &["health"]).await;
    assert_ne!(code, 0, "poolctl health with the upstream down: {out}{err}");

    let _back = Upstream::start(addr, UpstreamConfig::default()).await.expect("back");
    let deadline = Instant::now() + Duration::from_secs(5);
    while health().await["overall_health"] != "healthy" {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out, err) = poolctl(&app, &["health"]).await;
    assert_eq!(code, 0, "{out}{err}");
    app.stop().await;
}

/// A black-holed endpoint (accepts TCP, never answers) in one pool does not hold up the leader's
/// passes for another pool: its warm sessions appear within a couple of ticks, not after the
/// black hole's handshake timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_pool_does_not_stall_another_pools_warm_up() {
    let hole = Hostile::black_hole().await.expect("black hole");
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("POOL_MANAGER_CLEANUP_INTERVAL", "1"),
            ("POOL_MANAGER_HEALTH_CHECK_INTERVAL", "1"),
        ],
        &[],
    )
    .await;
    // Registered first (and first by id), so a sequential pass would meet it first.
    register(&app, "a-hole", &hole.url(), json!({"pool_min_size": 3})).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while hole.connections() == 0 {
        assert!(Instant::now() < deadline, "the leader never tried the black hole");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    register(&app, "b-ok", &up.url(), json!({"pool_min_size": 2})).await;
    let registered = Instant::now();
    loop {
        let stats = pool_stats(&app, "b-ok").await;
        if stats["available_sessions"] == 2 {
            break;
        }
        assert!(
            registered.elapsed() < Duration::from_secs(4),
            "warm-up of b-ok waited behind the black hole: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// A client session's GET stream (session isolation relays its upstream session's stream): one
/// per session on a node — a second gets 409 while the first is open, and is allowed once it
/// ended — and the stream ends as soon as the node starts stopping, so shutdown does not wait
/// out its grace period on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_get_stream_per_session_and_it_ends_when_the_node_stops() {
    use futures_util::StreamExt as _;
    let hostile = Hostile::start().await.expect("hostile upstream");
    let mut app = TestApp::spawn_with(Backend::Sqlite, &[("SHUTDOWN_GRACE_SECONDS", "20")], &[]).await;
    register(&app, "g", &hostile.url(), json!({"pool_isolation": "session"})).await;
    let mut client = Client::new(&app, "g", "erin");
    client.initialize().await;
    let sid = client.session.clone().expect("session");
    let token = app.token("erin", &["reader"], &[], 600);
    let open = || {
        app.client
            .get(app.url("/servers/g/mcp"))
            .bearer_auth(&token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .send()
    };
    let first = open().await.expect("GET");
    assert_eq!(first.status(), StatusCode::OK);
    let mut events = first.bytes_stream();
    let chunk = events.next().await.expect("an event").expect("bytes");
    assert!(String::from_utf8_lossy(&chunk).contains("notifications/message"));
    let second = open().await.expect("GET");
    assert_eq!(second.status(), StatusCode::CONFLICT);
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        let r = open().await.expect("GET");
        if r.status() != StatusCode::CONFLICT {
            break r;
        }
        assert!(Instant::now() < deadline, "the ended stream was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(third.status(), StatusCode::OK);
    let mut events = third.bytes_stream();
    events.next().await.expect("an event").expect("bytes");
    let stopping = Instant::now();
    app.signal_stop();
    // The stream ends cleanly (the client would resume elsewhere with Last-Event-ID).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = events.next().await {
            if chunk.is_err() {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(
        ended,
        Ok(true),
        "the GET stream ended cleanly when the node began stopping"
    );
    while !app.stopped() {
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "shutdown waited on the stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
