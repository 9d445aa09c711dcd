//! Connection hygiene and load shedding (issue 15, SPEC §9 "Clients"), over raw TCP so that the
//! client can misbehave exactly: half a request head, a body at a trickle, an idle keep-alive
//! connection, one connection too many from one address, one request over the node's cap. Each
//! test waits on the event (the node closing the socket, the answer arriving) and checks when it
//! happened against the configured timeout.

use std::time::{Duration, Instant};

use poolgate_loadtests::upstream::UpstreamConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp};
use crate::mcp_client::{register, upstream, Client};

/// Slack for a loaded 2-core test machine on top of a configured timeout.
const MARGIN: Duration = Duration::from_millis(1500);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.expect("connect")
}

/// Reads until the node closes the connection (EOF or reset); returns what was read and when
/// the close came. Bounded, so a node that never closes fails the test instead of hanging it.
async fn read_until_closed(tcp: &mut TcpStream, bound: Duration) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let outcome = tokio::time::timeout(bound, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let closed_at = Instant::now();
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        outcome.is_ok(),
        "the node kept the connection open for {bound:?}; read: {text:?}"
    );
    (text, closed_at)
}

/// Reads one complete answer with a Content-Length (head and body) off a kept-alive connection.
async fn read_answer(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(n > 0, "closed before a whole answer: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// The value of a series labelled only by `node` in the node's `/metrics` text (0 when absent).
async fn metric(app: &TestApp, name: &str) -> f64 {
    labelled(app, name, "node=").await
}

/// The value of the first series of `name` whose labels contain `label` (e.g. `phase="idle"`).
async fn labelled(app: &TestApp, name: &str, label: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn half_a_request_head_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("SERVER_HEADER_READ_TIMEOUT", "1"), ("SERVER_KEEPALIVE_TIMEOUT", "30")],
        &[],
    )
    .await;
    let timeout = Duration::from_secs(1);

    // Half the headers, then nothing.
    let mut slow = connect(&app).await;
    let sent = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n")
        .await
        .expect("write");
    let (read, closed) = read_until_closed(&mut slow, timeout + MARGIN + MARGIN).await;
    let took = closed - sent;
    assert!(
        took >= timeout - Duration::from_millis(100) && took <= timeout + MARGIN,
        "closed after {took:?}, expected about {timeout:?}"
    );
    assert!(!read.contains(" 200 "), "no answer to half a head: {read:?}");

    // A connection that sends nothing at all goes the same way.
    let mut silent = connect(&app).await;
    let opened = Instant::now();
    let (_, closed) = read_until_closed(&mut silent, timeout + MARGIN + MARGIN).await;
    assert!(
        closed - opened <= timeout + MARGIN,
        "silent connection closed after {:?}",
        closed - opened
    );

    // Bytes trickling in do not extend the deadline (the head must be complete in time).
    let trickle = connect(&app).await;
    let started = Instant::now();
    let writer = tokio::spawn({
        let (mut read_half, mut write_half) = trickle.into_split();
        async move {
            for b in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if write_half.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(10), read_half.read(&mut buf)).await;
            Instant::now()
        }
    });
    let closed = writer.await.expect("join");
    assert!(
        closed - started <= timeout + MARGIN,
        "a trickled head closed after {:?}",
        closed - started
    );

    assert!(labelled(&app, "mcp_gateway_connection_timeouts_total", "phase=\"header\"").await >= 3.0);
    // Everything else still works.
    let (status, _) = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout_not_before() {
    // Keep-alive longer than the header timeout: the idle wait must get the keep-alive one.
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("SERVER_HEADER_READ_TIMEOUT", "1"), ("SERVER_KEEPALIVE_TIMEOUT", "3")],
        &[],
    )
    .await;
    let keepalive = Duration::from_secs(3);
    let mut tcp = connect(&app).await;
    for _ in 0..2 {
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .expect("write");
        let answer = read_answer(&mut tcp).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let answered = Instant::now();
    let (rest, closed) = read_until_closed(&mut tcp, keepalive + MARGIN + MARGIN).await;
    assert!(rest.is_empty(), "{rest:?}");
    let idle = closed - answered;
    assert!(
        idle >= keepalive - Duration::from_millis(200) && idle <= keepalive + MARGIN,
        "idle connection closed after {idle:?}, expected about {keepalive:?} (not the 1 s header timeout)"
    );
    assert!(labelled(&app, "mcp_gateway_connection_timeouts_total", "phase=\"idle\"").await >= 1.0);
    app.stop().await;
}

/// Sends a request head announcing `length` body bytes, then the body one byte per `every`,
/// until the node stops reading; returns the connection's reader half's full text and when the
/// node closed it.
async fn trickle_body(
    app: &TestApp,
    head: String,
    length: usize,
    every: Duration,
    bound: Duration,
) -> (String, Duration) {
    let tcp = connect(app).await;
    let (mut read_half, mut write_half) = tcp.into_split();
    let started = Instant::now();
    write_half.write_all(head.as_bytes()).await.expect("head");
    let writer = tokio::spawn(async move {
        for _ in 0..length {
            if write_half.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
        write_half
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(bound, async {
        loop {
            match read_half.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let took = started.elapsed();
    writer.abort();
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        closed.is_ok(),
        "the node kept a trickling body's connection for {bound:?}: {text:?}"
    );
    (text, took)
}

#[tokio::test]
async fn a_body_at_a_trickle_is_answered_408_and_closed_within_the_body_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("SERVER_BODY_READ_TIMEOUT", "1")], &[]).await;
    let timeout = Duration::from_secs(1);
    let token = app.admin_token();
    // Four bytes a second: a timer between frames (tower-http's) would never trip; the whole-body
    // deadline does.
    let every = Duration::from_millis(250);

    // The admin API: its JSON error.
    let head = format!(
        "POST /api/servers HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        app.addr
    );
    let (text, took) = trickle_body(&app, head, 200, every, timeout + MARGIN + MARGIN).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    assert!(text.contains("\"body_timeout\""), "{text}");
    assert!(took <= timeout + MARGIN, "answered and closed after {took:?}");

    // The MCP endpoint, at 1 byte/s: a JSON-RPC error.
    let reader = app.reader_token();
    let head = format!(
        "POST /servers/anything/mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {reader}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 200\r\n\r\n",
        app.addr
    );
    let (text, took) = trickle_body(&app, head, 200, Duration::from_secs(1), timeout + MARGIN + MARGIN).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default()).expect("JSON-RPC body");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert!(took <= timeout + MARGIN, "answered and closed after {took:?}");

    assert!(labelled(&app, "mcp_gateway_connection_timeouts_total", "phase=\"body\"").await >= 2.0);
    app.stop().await;
}

#[tokio::test]
async fn over_its_concurrency_cap_a_node_answers_503_at_once_and_probes_still_answer() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("SERVER_MAX_CONCURRENT_REQUESTS", "2")], &[]).await;
    let token = app.admin_token();
    // Two requests held open: heads sent, bodies not yet (the node counts them from their head).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = connect(&app).await;
        let head = format!(
            "POST /api/servers HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
            app.addr
        );
        tcp.write_all(head.as_bytes()).await.expect("head");
        held.push(tcp);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&app, "mcp_gateway_requests_in_flight").await < 2.0 {
        assert!(Instant::now() < deadline, "the held requests never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The next request is refused at once, with a retry hint, in the API's JSON error shape.
    let started = Instant::now();
    let resp = app
        .client
        .get(app.url("/api/servers"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    let took = started.elapsed();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(took < Duration::from_millis(500), "shed after {took:?}: not at once");

    // On the MCP endpoint: a JSON-RPC error.
    let resp = app
        .client
        .post(app.url("/servers/anything/mcp"))
        .bearer_auth(app.reader_token())
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["error"]["code"], -32010, "{body}");

    // Probes are always served.
    for probe in ["/health", "/ready", "/metrics"] {
        let status = app.client.get(app.url(probe)).send().await.expect("probe").status();
        assert_eq!(status, StatusCode::OK, "{probe} while over the cap");
    }
    assert_eq!(
        labelled(&app, "mcp_gateway_requests_shed_total", "kind=\"admin\"").await,
        1.0
    );
    assert_eq!(
        labelled(&app, "mcp_gateway_requests_shed_total", "kind=\"mcp\"").await,
        1.0
    );

    // A held request ends: a place is free again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.admin(Method::GET, "/api/servers", None).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn a_connection_over_the_per_ip_limit_is_closed_at_once() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("SERVER_MAX_CONNECTIONS_PER_IP", "2")], &[]).await;
    let mut first = connect(&app).await;
    let _second = connect(&app).await;
    // The first is served (so both were accepted, in order, before the third).
    first
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    assert!(read_answer(&mut first).await.starts_with("HTTP/1.1 200"));

    let mut third = connect(&app).await;
    let opened = Instant::now();
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let (read, closed) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(read.is_empty(), "no answer over the limit: {read:?}");
    assert!(
        closed - opened < Duration::from_secs(1),
        "closed after {:?}",
        closed - opened
    );

    // One closes: a new connection from the address is served again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect(&app).await;
        let _ = again
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), again.read(&mut buf))
            .await
            .expect("answer or close")
            .unwrap_or(0);
        if n > 0 {
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(_second);
    // (The metrics scrape needs a connection too: all of the test's are closed or closing.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(resp) = app.client.get(app.url("/metrics")).send().await {
            let text = resp.text().await.unwrap_or_default();
            let refused = text
                .lines()
                .find(|l| l.starts_with("mcp_gateway_connections_refused_total{") && l.contains("per_ip_limit"))
                .and_then(|l| l.rsplit_once(' '))
                .and_then(|(_, v)| v.parse::<f64>().ok());
            if let Some(n) = refused {
                assert!(n >= 1.0, "{text}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "metrics unreachable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_long_streamed_answer_outlives_every_connection_timeout() {
    let up = upstream(UpstreamConfig {
        sse: true,
        ..Default::default()
    })
    .await;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("SERVER_HEADER_READ_TIMEOUT", "1"),
            ("SERVER_BODY_READ_TIMEOUT", "1"),
            ("SERVER_KEEPALIVE_TIMEOUT", "1"),
        ],
        &[],
    )
    .await;
    register(&app, "long", &up.url(), json!({"pool_max_size": 2})).await;
    let mut c = Client::new(&app, "long", "alice");
    c.initialize().await;
    // A 3 s answer streamed as progress events: three times each timeout.
    let started = Instant::now();
    let (status, events, _) = c
        .post(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "slow", "arguments": {"ms": 3000, "steps": 6}, "_meta": {"progressToken": "p"}}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert!(started.elapsed() >= Duration::from_millis(2900));
    let events = events.as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 7, "six progress events and the answer: {events:?}");
    assert_eq!(events[6]["id"], 7, "{events:?}");
    assert!(events[6]["result"].is_object(), "{events:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_stopping_node_closes_idle_keep_alive_connections_at_once() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, &[("SERVER_KEEPALIVE_TIMEOUT", "60")], &[]).await;
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    assert!(read_answer(&mut idle).await.starts_with("HTTP/1.1 200"));
    let stopping = Instant::now();
    app.signal_stop();
    // Nothing in flight: the node stops within moments, and the idle connection does not wait
    // for its 60 s keep-alive.
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(
        closed - stopping < Duration::from_secs(2),
        "closed after {:?}",
        closed - stopping
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.stopped() {
        assert!(Instant::now() < deadline, "the node did not stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
}
