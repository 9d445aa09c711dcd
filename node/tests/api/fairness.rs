//! Fair under abuse: per-user quotas, the unused-session TTL and the per-user rate limit, through
//! real nodes (embedded and two nodes on one Redis), as clients see them: HTTP 429 with
//! `Retry-After` (and the IETF `RateLimit-Policy` / `RateLimit` fields for the rate limit), a
//! JSON-RPC error naming the limit, and the other users served.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::mcp_client::{register, two_nodes, unique_prefix, upstream, Client};

/// A raw `initialize` as `user`: status, headers and body.
async fn raw_initialize(app: &TestApp, server: &str, user: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    raw_post(
        app,
        server,
        user,
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await
}

async fn raw_post(
    app: &TestApp,
    server: &str,
    user: &str,
    session: Option<&str>,
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app
        .client
        .post(app.url(&format!("/servers/{server}/mcp")))
        .bearer_auth(app.token(user, &["reader"], &[], 600))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .map_or_else(|| serde_json::from_str(&text), serde_json::from_str)
        .unwrap_or(Value::Null);
    (status, headers, value)
}

fn header_of(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// alice at her session quota gets 429 (code -32005, the quota named, Retry-After) while bob is
/// served; closing one of her sessions lets her open another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_at_the_session_quota_gets_429_while_others_are_served() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let up = upstream(Default::default()).await;
    register(
        &app,
        "quota",
        &up.url(),
        json!({"pool_isolation": "session", "pool_max_size": 6, "pool_max_sessions_per_user": 2}),
    )
    .await;
    let mut a1 = Client::new(&app, "quota", "alice");
    a1.initialize().await;
    let mut a2 = Client::new(&app, "quota", "alice");
    a2.initialize().await;
    let (status, headers, body) = raw_initialize(&app, "quota", "alice").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], -32005, "{body}");
    assert_eq!(body["error"]["data"]["quota"], "pool_max_sessions_per_user", "{body}");
    assert_eq!(body["error"]["data"]["limit"], 2, "{body}");
    let retry: u64 = header_of(&headers, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry >= 1, "{retry}");
    // Her sessions still work, and bob is served.
    a1.call_ok(1, "echo", json!({"text": "hi"})).await;
    let mut bob = Client::new(&app, "quota", "bob");
    bob.initialize().await;
    bob.call_ok(1, "echo", json!({"text": "hi"})).await;
    // One of hers ends: she may open another.
    assert_eq!(a2.delete().await, StatusCode::OK);
    let mut a3 = Client::new(&app, "quota", "alice");
    a3.initialize().await;
    // The refusal is on /metrics, by server and reason.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mcp_gateway_requests_refused_total")
                && l.contains("reason=\"quota_sessions\"")
                && l.contains("server_id=\"quota\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    app.stop().await;
}

/// alice floods at 10× her rate limit: 429s with Retry-After, RateLimit-Policy and RateLimit;
/// bob's requests meanwhile all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_rate_limited_with_headers_while_others_are_served() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let up = upstream(Default::default()).await;
    register(
        &app,
        "rated",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 4, "pool_session_capacity": 8,
               "pool_rate_limit": 5, "pool_rate_burst": 5}),
    )
    .await;
    let mut alice = Client::new(&app, "rated", "alice");
    alice.initialize().await;
    let mut bob = Client::new(&app, "rated", "bob");
    bob.initialize().await;
    let session = alice.session.clone().expect("session");
    // 50 requests in about one second: 10× a rate of 5/s.
    let started = Instant::now();
    let (mut ok, mut limited) = (0, 0);
    for i in 0..50 {
        let (status, headers, body) = raw_post(
            &app,
            "rated",
            "alice",
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}),
        )
        .await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert_eq!(body["error"]["code"], -32005, "{body}");
                assert!(header_of(&headers, "retry-after").is_some(), "{headers:?}");
                assert_eq!(
                    header_of(&headers, "ratelimit-policy").as_deref(),
                    Some("\"user\";q=5;w=1")
                );
                let rl = header_of(&headers, "ratelimit").expect("RateLimit");
                assert!(rl.starts_with("\"user\";r=0;t="), "{rl}");
            }
            other => panic!("alice: unexpected {other}: {body}"),
        }
        if i % 10 == 0 {
            bob.call_ok(1000 + i, "echo", json!({"text": "bob"})).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    // The burst plus 5 per second elapsed (one more for rounding), never more.
    let allowed = 5 + (5.0 * secs).ceil() as i32 + 1;
    assert!(ok <= allowed, "admitted {ok} in {secs:.2}s (allowed {allowed})");
    assert!(ok >= 5, "the burst is admitted: {ok}");
    assert!(limited >= 50 - allowed, "limited {limited}");
    app.stop().await;
}

/// The rate limit holds across two nodes on one Redis: alice's requests through both, in total,
/// stay within rate × time + burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_two_nodes() {
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    let up = upstream(Default::default()).await;
    register(
        &a,
        "fleet",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 4, "pool_session_capacity": 8,
               "pool_rate_limit": 4, "pool_rate_burst": 2}),
    )
    .await;
    let mut alice = Client::new(&a, "fleet", "alice");
    alice.initialize().await;
    let via_b = alice.via(&b, "fleet");
    let started = Instant::now();
    let mut ok = 0;
    for i in 0..40 {
        let client = if i % 2 == 0 { &alice } else { &via_b };
        let (status, body) = client.call(i, "echo", json!({"text": "x"})).await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let allowed = 2 + (4.0 * secs).ceil() as i32 + 1;
    assert!(
        ok <= allowed,
        "admitted {ok} in {secs:.2}s through two nodes (allowed {allowed})"
    );
    assert!(ok >= 2, "{ok}");
    a.stop().await;
    b.stop().await;
}

/// A session that only initialized ends after the unused TTL and frees its slot: with a pool of
/// one, bob's initialize (waiting for a slot) succeeds once alice's unused session ends, and
/// alice's session is then gone (404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_sessions_end_after_the_short_ttl_and_free_their_slot() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let up = upstream(Default::default()).await;
    register(
        &app,
        "unused",
        &up.url(),
        json!({"pool_isolation": "session", "pool_max_size": 1, "pool_unused_ttl": 1, "pool_timeout": 10,
               "pool_max_sessions_per_user": 0}),
    )
    .await;
    let mut alice = Client::new(&app, "unused", "alice");
    alice.initialize().await;
    let started = Instant::now();
    let mut bob = Client::new(&app, "unused", "bob");
    bob.initialize().await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "bob waited {waited:?}: alice's unused session held the slot"
    );
    bob.call_ok(1, "echo", json!({"text": "bob"})).await;
    let (status, body) = alice.call(1, "echo", json!({"text": "alice"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    app.stop().await;
}

/// A used session lives by the idle TTL, not the unused one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_session_outlives_the_unused_ttl() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let up = upstream(Default::default()).await;
    register(
        &app,
        "used",
        &up.url(),
        json!({"pool_isolation": "session", "pool_max_size": 2, "pool_unused_ttl": 1}),
    )
    .await;
    let mut alice = Client::new(&app, "used", "alice");
    alice.initialize().await;
    alice.call_ok(1, "echo", json!({"text": "first use"})).await;
    // Past the unused TTL (an expiry in control-plane time: there is no event to wait for).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // Another user's request runs the reclaim pass on its way in.
    let mut bob = Client::new(&app, "used", "bob");
    bob.initialize().await;
    alice.call_ok(2, "echo", json!({"text": "still here"})).await;
    app.stop().await;
}
