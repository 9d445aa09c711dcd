//! Streamed answers through a node against an upstream that writes like the SDK servers (headers,
//! then each event in a write of its own), with keep-alive clients as the SDKs use them. Nagle's
//! algorithm on the node's accepted connections, meeting the client's delayed ACK, used to hold
//! each streamed answer back by ~40 ms; this compares the same calls direct and through a node,
//! in the same run.

use std::time::{Duration, Instant};

use poolgate_loadtests::upstream::UpstreamConfig;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::mcp_client::{register, upstream, Client};

const CALLS: usize = 25;

/// The median of `CALLS` sequential echo calls on one keep-alive connection.
async fn median_call(mut call: impl AsyncFnMut(i64) -> Value) -> Duration {
    let mut took = Vec::with_capacity(CALLS);
    for i in 0..CALLS as i64 {
        let started = Instant::now();
        let answer = call(i).await;
        took.push(started.elapsed());
        let last = match &answer {
            Value::Array(events) => events.last().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        assert_eq!(last["result"]["content"][0]["text"], "ping", "{answer}");
    }
    took.sort();
    took[CALLS / 2]
}

#[tokio::test]
async fn a_streamed_answer_is_not_held_back_on_the_way_to_the_client() {
    let up = upstream(UpstreamConfig {
        sse: true,
        ..Default::default()
    })
    .await;
    // Direct: a keep-alive session straight to the upstream.
    let http = reqwest::Client::new();
    let post = |body: Value, sid: Option<String>| {
        let mut req = http
            .post(up.url())
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = sid {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        None,
    )
    .await
    .expect("initialize sent");
    assert_eq!(
        init.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream"),
        "the upstream answers as an event stream"
    );
    let sid = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    init.text().await.expect("initialize answer");
    let direct = median_call(async |i| {
        let resp = post(
            json!({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "ping"}}}),
            sid.clone(),
        )
        .await
        .expect("call sent");
        let text = resp.text().await.expect("answer");
        let data = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or("null");
        serde_json::from_str(data).expect("event data is JSON")
    })
    .await;

    // Through a node (session isolation: the node relays the upstream's stream event by event).
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(&app, "sse", &up.url(), json!({"pool_max_size": 2})).await;
    let mut c = Client::new(&app, "sse", "alice");
    c.initialize().await;
    let through = median_call(async |i| c.call(i + 1, "echo", json!({"text": "ping"})).await.1).await;

    // A stall is ~40 ms per call; a node adds well under a millisecond here.
    assert!(
        through < direct + Duration::from_millis(10),
        "median call through the node {through:?} vs direct {direct:?}: answers are held back"
    );
    app.stop().await;
}
