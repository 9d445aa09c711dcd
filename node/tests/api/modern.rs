//! Clients of the sessionless MCP revision 2026-07-28 through the gateway: no `initialize`, no
//! `Mcp-Session-Id`; `server/discover`, version and capabilities in every request's `_meta`, and
//! `MCP-Protocol-Version` / `Mcp-Method` / `Mcp-Name` headers.
//!
//! - The official Python SDK 2.x client (node/tests/sdk/py2_client.py, `mode` "auto" or
//!   "2026-07-28") through a node to a session-era upstream (the gateway answers
//!   `server/discover` itself and keeps upstream sessions behind the scenes), to a sessionless
//!   upstream (the project's test upstream in stateless mode) and to a real mcp 2.x `MCPServer`
//!   (node/tests/sdk/server26.py, 2026-only).
//! - Isolation: in session isolation a user's 2026 requests see one upstream session, never
//!   another user's, from any node (two nodes sharing Redis).
//! - Session-era SDK clients (Python 1.x, TypeScript) still work in front of a 2026 upstream.
//! - Malformed 2026 requests (raw reqwest) are refused with the revision's errors before anything
//!   reaches an upstream.
//!
//! The SDKs and their subprocesses come from peers.rs (installed by `scripts/test.sh`); they get
//! PATH (and what they need) only, and are killed when the test ends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use poolgate_loadtests::upstream::{Upstream, UpstreamConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::mcp_client::{header, stateless_upstream, two_nodes, unique_prefix, upstream};
use crate::peers::{
    assert_session_basics, call_texts, read_log, register_pooled, run_client, start_python_server, tool_names,
    venv2_python, ChildGuard, Sdk, TempDir,
};

/// The sessionless revision.
const V2026: &str = "2026-07-28";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// JSON-RPC errors of the revision.
const HEADER_MISMATCH: i64 = -32020;
const UNSUPPORTED_VERSION: i64 = -32022;
const INVALID_PARAMS: i64 = -32602;

// ---------------------------------------------------------------------------
// SDK clients and servers
// ---------------------------------------------------------------------------

/// node/tests/sdk/server26.py (mcp 2.x `MCPServer`, refusing everything but 2026-07-28) on a free
/// loopback port.
async fn start_server26(dir: &TempDir) -> (ChildGuard, SocketAddr) {
    start_python_server("server26", venv2_python(), "server26.py", &["--only-2026"], dir).await
}

/// The `REQ ...` lines server26.py logged (one per HTTP request it got).
fn server26_requests(server: &ChildGuard) -> Vec<String> {
    read_log(&server.stderr)
        .lines()
        .filter(|l| l.starts_with("REQ "))
        .map(str::to_owned)
        .collect()
}

/// A py2_client.py plan: `mode`, then `calls`.
fn plan26(mode: &str, calls: Value) -> Value {
    json!({"mode": mode, "calls": calls})
}

/// `n` counter calls.
fn counters(n: usize) -> Value {
    json!((0..n)
        .map(|_| json!({"name": "counter", "arguments": {}}))
        .collect::<Vec<_>>())
}

/// The counts of the report's `counter` calls (from their text).
fn counts(out: &Value) -> Vec<u64> {
    out["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == "counter")
        .map(|c| c["text"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0))
        .collect()
}

/// The upstream sessions the report's `counter` calls name (the session-era test upstream puts
/// its session id in structuredContent).
fn counter_sessions(out: &Value) -> Vec<String> {
    out["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == "counter")
        .map(|c| {
            c["structuredContent"]["session"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// What every py2_client.py run that spoke 2026-07-28 with the gateway shows: the negotiated
/// version, no handshake, no session id, only POSTs carrying the revision's headers, the expected
/// tools, and no failed call.
fn assert_modern_run(out: &Value, expected_tools: &[&str]) {
    assert_eq!(out["protocolVersion"], V2026, "2026-07-28 was not negotiated: {out}");
    assert_eq!(out["era"], "modern", "{out}");
    assert!(
        out["sessionId"].is_null(),
        "a 2026 client gets no Mcp-Session-Id: {out}"
    );
    let http = out["http"].as_array().cloned().unwrap_or_default();
    assert!(!http.is_empty(), "{out}");
    if out["mode"] == "auto" {
        assert_eq!(http[0]["rpc"], "server/discover", "auto mode probes first: {out}");
        assert_eq!(http[0]["status"], 200, "the gateway answered server/discover: {out}");
        let supported = out["supportedVersions"].as_array().cloned().unwrap_or_default();
        assert!(supported.contains(&json!(V2026)), "discover lists {V2026}: {out}");
    }
    for h in &http {
        assert_eq!(h["method"], "POST", "only POSTs in 2026: {h} in {out}");
        assert_ne!(h["rpc"], "initialize", "no handshake: {out}");
        assert_eq!(h["status"], 200, "every exchange answered 200: {h} in {out}");
        assert_eq!(h["request"]["mcp-protocol-version"], V2026, "{h}");
        assert!(h["responseSessionId"].is_null(), "no session id issued: {h}");
    }
    let tools = tool_names(out);
    for t in expected_tools {
        assert!(tools.iter().any(|n| n == t), "tools/list lacks {t}: {tools:?} in {out}");
    }
    let errors = out["errors"].as_array().cloned().unwrap_or_default();
    assert!(errors.is_empty(), "calls failed: {errors:?} in {out}");
    for call in out["calls"].as_array().into_iter().flatten() {
        assert_eq!(call["isError"], json!(false), "tool call failed: {call} in {out}");
    }
}

// ---------------------------------------------------------------------------
// a. 2026 client -> gateway -> session-era upstream
// ---------------------------------------------------------------------------

/// The Python SDK 2.x client, in `auto` mode (probes `server/discover`, would fall back to
/// `initialize`) and pinned to 2026-07-28 (no probe), negotiates 2026-07-28 with the gateway in
/// front of a session-era upstream: the gateway answers `server/discover` itself and carries the
/// calls on upstream sessions of its own.
#[tokio::test]
async fn py2_client_speaks_2026_to_the_gateway_over_a_session_era_upstream() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register_pooled(&app, "era25", &up.url(), json!({})).await;
    let url = app.url("/servers/era25/mcp");
    let dir = TempDir::new();

    // One user per mode, so each run starts a counter of its own.
    for (mode, user) in [("auto", "alice"), (V2026, "bob")] {
        let token = app.token(user, &["reader"], &[], 600);
        let calls = json!([
            {"name": "echo", "arguments": {"text": format!("hello 2026 ({mode})")}},
            {"name": "add", "arguments": {"a": 2, "b": 3}},
            {"name": "counter", "arguments": {}},
            {"name": "counter", "arguments": {}},
        ]);
        let out = run_client(Sdk::Python2, &url, &token, &plan26(mode, calls), &dir).await;
        assert_modern_run(&out, &["echo", "add", "slow", "counter"]);
        let texts = call_texts(&out);
        assert_eq!(texts[0], format!("hello 2026 ({mode})"), "{out}");
        assert_eq!(texts[1], "5", "{out}");
        assert_eq!(counts(&out), [1, 2], "{mode}: {out}");
        let sessions = counter_sessions(&out);
        assert!(
            !sessions[0].is_empty() && sessions[0] == sessions[1],
            "{mode}: one upstream session carries the user's calls: {out}"
        );
        // Calls carried the routing headers to the gateway.
        let call_headers: Vec<&Value> = out["http"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["rpc"] == "tools/call")
            .map(|h| &h["request"])
            .collect();
        assert_eq!(call_headers.len(), 4, "{out}");
        assert!(
            call_headers
                .iter()
                .all(|h| h["mcp-method"] == "tools/call" && h["mcp-name"].is_string()),
            "{out}"
        );
    }
    assert!(
        up.stats().initializes.load(Ordering::Relaxed) >= 2,
        "the gateway opened upstream sessions for the two users"
    );
    assert_eq!(up.stats().tool_calls.load(Ordering::Relaxed), 8);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// b. 2026 client -> gateway -> 2026 upstreams
// ---------------------------------------------------------------------------

/// 2026 end to end: the Python SDK 2.x client through the gateway to the project's test upstream
/// in stateless mode (which refuses any request without the revision's headers and `_meta`).
#[tokio::test]
async fn py2_client_through_the_gateway_to_a_stateless_test_upstream() {
    let up = stateless_upstream().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register_pooled(&app, "era26", &up.url(), json!({})).await;
    let url = app.url("/servers/era26/mcp");
    let token = app.token("alice", &["reader"], &[], 600);
    let dir = TempDir::new();

    let mut seen = Vec::new();
    for mode in ["auto", V2026] {
        let calls = json!([
            {"name": "echo", "arguments": {"text": "hello stateless"}},
            {"name": "add", "arguments": {"a": 20, "b": 22}},
            {"name": "counter", "arguments": {}},
        ]);
        let out = run_client(Sdk::Python2, &url, &token, &plan26(mode, calls), &dir).await;
        assert_modern_run(&out, &["echo", "add", "slow", "counter"]);
        let texts = call_texts(&out);
        assert_eq!(texts[..2], ["hello stateless", "42"], "{mode}: {out}");
        seen.extend(counts(&out));
    }
    // The stateless upstream keeps one counter for everyone.
    assert_eq!(seen, [1, 2], "the stateless upstream's counter");
    let stats = up.stats();
    assert_eq!(
        stats.refused.load(Ordering::Relaxed),
        0,
        "every request the gateway forwarded was a valid 2026 request"
    );
    assert_eq!(stats.initializes.load(Ordering::Relaxed), 0, "no handshake upstream");
    assert_eq!(stats.tool_calls.load(Ordering::Relaxed), 6);
    app.stop().await;
}

/// 2026 end to end with a real SDK on both sides: the Python SDK 2.x client through the gateway
/// to an mcp 2.x `MCPServer` that refuses everything but 2026-07-28 (server26.py --only-2026).
#[tokio::test]
async fn py2_client_through_the_gateway_to_an_mcp2_server() {
    let dir = TempDir::new();
    let (server, addr) = start_server26(&dir).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register_pooled(&app, "mcp2", &format!("http://{addr}/mcp"), json!({})).await;
    let url = app.url("/servers/mcp2/mcp");
    let token = app.token("alice", &["reader"], &[], 600);

    let mut seen = Vec::new();
    for mode in ["auto", V2026] {
        let calls = json!([
            {"name": "echo", "arguments": {"text": "hello MCPServer"}},
            {"name": "add", "arguments": {"a": 2, "b": 3}},
            {"name": "counter", "arguments": {}},
        ]);
        let out = run_client(Sdk::Python2, &url, &token, &plan26(mode, calls), &dir).await;
        assert_modern_run(&out, &["echo", "add", "counter"]);
        let texts = call_texts(&out);
        assert_eq!(texts[..2], ["hello MCPServer", "5"], "{mode}: {out}\n{}", server.logs());
        let add = &out["calls"][1]["result"];
        assert_eq!(add["structuredContent"]["result"], 5, "{out}");
        seen.extend(counts(&out));
    }
    assert_eq!(seen, [1, 2], "the server's process-wide counter\n{}", server.logs());
    // Everything that reached the server was a 2026 POST with its routing headers.
    let requests = server26_requests(&server);
    assert!(!requests.is_empty(), "{}", server.logs());
    for r in &requests {
        assert!(
            r.starts_with("REQ POST /mcp pv=2026-07-28 method=") && !r.contains(" method=- "),
            "not a 2026 request: {r}\n{}",
            server.logs()
        );
    }
    let calls = requests.iter().filter(|r| r.contains(" method=tools/call ")).count();
    assert_eq!(calls, 6, "{requests:#?}");
    assert!(
        requests
            .iter()
            .filter(|r| r.contains(" method=tools/call "))
            .all(|r| !r.contains(" name=- ")),
        "tools/call carried Mcp-Name upstream: {requests:#?}"
    );
    app.stop().await;
    let mut server = server;
    if let Some(status) = server.exited() {
        panic!("server26.py died during the test ({status})\n{}", server.logs());
    }
}

// ---------------------------------------------------------------------------
// c. isolation
// ---------------------------------------------------------------------------

/// Session isolation over a session-era upstream: a 2026 client has no session, so the gateway
/// binds each USER to an upstream session. alice and bob, concurrently, each count from 1; alice's
/// next run continues her counter on the same upstream session; bob's never sees hers.
#[tokio::test]
async fn users_of_2026_clients_never_share_upstream_state() {
    let up = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register_pooled(&app, "iso26", &up.url(), json!({"pool_max_size": 4})).await;
    let url = app.url("/servers/iso26/mcp");
    let alice = app.token("alice", &["reader"], &[], 600);
    let bob = app.token("bob", &["reader"], &[], 600);
    let dir = TempDir::new();

    let plan = plan26(V2026, counters(3));
    let (a1, b1) = tokio::join!(
        run_client(Sdk::Python2, &url, &alice, &plan, &dir),
        run_client(Sdk::Python2, &url, &bob, &plan, &dir),
    );
    assert_modern_run(&a1, &["counter"]);
    assert_modern_run(&b1, &["counter"]);
    assert_eq!(counts(&a1), [1, 2, 3], "alice: {a1}");
    assert_eq!(
        counts(&b1),
        [1, 2, 3],
        "bob starts at 1, never sees alice's state: {b1}"
    );
    let (sa, sb) = (counter_sessions(&a1), counter_sessions(&b1));
    assert!(sa.iter().all(|s| !s.is_empty() && *s == sa[0]), "{a1}");
    assert!(sb.iter().all(|s| !s.is_empty() && *s == sb[0]), "{b1}");
    assert_ne!(sa[0], sb[0], "alice and bob on one upstream session");

    // alice again (auto mode this time): her counter continues on her upstream session.
    let a2 = run_client(Sdk::Python2, &url, &alice, &plan26("auto", counters(2)), &dir).await;
    assert_modern_run(&a2, &["counter"]);
    assert_eq!(counts(&a2), [4, 5], "alice continues her counter: {a2}");
    assert!(counter_sessions(&a2).iter().all(|s| *s == sa[0]), "{a2}");
    // bob again: still his own.
    let b2 = run_client(Sdk::Python2, &url, &bob, &plan26(V2026, counters(1)), &dir).await;
    assert_eq!(counts(&b2), [4], "bob continues his counter: {b2}");
    assert_eq!(counter_sessions(&b2), [sb[0].clone()], "{b2}");
    app.stop().await;
}

/// Two nodes sharing Redis: alice's 2026 calls via node A then node B continue one counter on one
/// upstream session; bob, via node B, starts at 1 on another.
#[tokio::test]
async fn a_users_2026_calls_continue_one_counter_across_nodes() {
    let up = upstream(UpstreamConfig::default()).await;
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    register_pooled(&a, "fleet26", &up.url(), json!({"pool_max_size": 4})).await;
    let dir = TempDir::new();
    let plan = plan26(V2026, counters(2));

    let via_a = a.url("/servers/fleet26/mcp");
    let via_b = b.url("/servers/fleet26/mcp");
    let alice_a = a.token("alice", &["reader"], &[], 600);
    let alice_b = b.token("alice", &["reader"], &[], 600);
    let on_a = run_client(Sdk::Python2, &via_a, &alice_a, &plan, &dir).await;
    assert_modern_run(&on_a, &["counter"]);
    assert_eq!(counts(&on_a), [1, 2], "alice via node A: {on_a}");
    let on_b = run_client(Sdk::Python2, &via_b, &alice_b, &plan, &dir).await;
    assert_modern_run(&on_b, &["counter"]);
    assert_eq!(counts(&on_b), [3, 4], "alice via node B continues: {on_b}");
    let sessions: Vec<String> = counter_sessions(&on_a)
        .into_iter()
        .chain(counter_sessions(&on_b))
        .collect();
    assert!(
        sessions.iter().all(|s| !s.is_empty() && *s == sessions[0]),
        "one upstream session for alice across nodes: {sessions:?}"
    );

    let bob_b = b.token("bob", &["reader"], &[], 600);
    let bob = run_client(Sdk::Python2, &via_b, &bob_b, &plan26(V2026, counters(1)), &dir).await;
    assert_modern_run(&bob, &["counter"]);
    assert_eq!(counts(&bob), [1], "bob starts at 1: {bob}");
    assert_ne!(
        counter_sessions(&bob)[0],
        sessions[0],
        "bob never gets alice's upstream session"
    );
    b.stop().await;
    a.stop().await;
}

// ---------------------------------------------------------------------------
// d. session-era clients -> gateway -> 2026 upstreams
// ---------------------------------------------------------------------------

/// The existing session-era SDK clients (TypeScript, Python 1.x) still work when the upstream
/// speaks only 2026-07-28: the test upstream in stateless mode, and an mcp 2.x `MCPServer` that
/// refuses session-era requests. The clients get gateway sessions; the upstreams get 2026 requests.
#[tokio::test]
async fn session_era_clients_work_in_front_of_2026_upstreams() {
    let up = stateless_upstream().await;
    let dir = TempDir::new();
    let (server, addr) = start_server26(&dir).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register_pooled(&app, "st26", &up.url(), json!({})).await;
    register_pooled(&app, "mcp2", &format!("http://{addr}/mcp"), json!({})).await;
    let token = app.token("alice", &["reader"], &[], 600);
    let plan = json!({
        "calls": [
            {"name": "echo", "arguments": {"text": "old client, new server"}},
            {"name": "add", "arguments": {"a": 2, "b": 3}},
            {"name": "counter", "arguments": {}},
            {"name": "counter", "arguments": {}},
        ],
        "terminate": true,
    });

    let mut seen = Vec::new();
    for sdk in [Sdk::TypeScript, Sdk::Python1] {
        let out = run_client(sdk, &app.url("/servers/st26/mcp"), &token, &plan, &dir).await;
        assert_session_basics(&out, &["echo", "add", "counter"]);
        let texts = call_texts(&out);
        assert_eq!(texts[..2], ["old client, new server", "5"], "{sdk:?}: {out}");
        seen.extend(counts(&out));
        assert_eq!(out["terminated"], true, "{sdk:?}: the DELETE was answered 2xx: {out}");
    }
    assert_eq!(seen, [1, 2, 3, 4], "the stateless upstream's one counter");
    assert_eq!(
        up.stats().refused.load(Ordering::Relaxed),
        0,
        "only valid 2026 requests upstream"
    );
    assert_eq!(up.stats().initializes.load(Ordering::Relaxed), 0);

    let out = run_client(Sdk::Python1, &app.url("/servers/mcp2/mcp"), &token, &plan, &dir).await;
    assert_session_basics(&out, &["echo", "add", "counter"]);
    assert_eq!(
        call_texts(&out),
        ["old client, new server", "5", "1", "2"],
        "{out}\n{}",
        server.logs()
    );
    let requests = server26_requests(&server);
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("REQ POST /mcp pv=2026-07-28 method=") && !r.contains(" method=- ")),
        "only 2026 requests reached the MCPServer: {requests:#?}"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// e. malformed 2026 requests (raw HTTP)
// ---------------------------------------------------------------------------

/// A 2026 `_meta` for `version`.
fn meta(version: &str) -> Value {
    json!({
        META_VERSION: version,
        META_CAPABILITIES: {},
        META_CLIENT_INFO: {"name": "poolgate-raw", "version": "0"},
    })
}

/// One raw exchange's outcome.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: String,
    /// The JSON body, or the JSON-RPC message of the last SSE `data:` line; Null if empty.
    body: Value,
    text: String,
}

/// Sends one request to `url` with a Bearer `token`, the Accept header of MCP clients and the
/// given extra headers (and `body` as JSON when given).
async fn send_raw(url: &str, token: &str, method: Method, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let text = resp.text().await.expect("body");
    let body = if content_type.starts_with("text/event-stream") {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .next_back()
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    Answer {
        status,
        content_type,
        body,
        text,
    }
}

/// A node with two pooled servers: `era25` (session-era test upstream) and `era26` (stateless
/// test upstream).
struct Bench {
    app: TestApp,
    era25: Upstream,
    era26: Upstream,
    token: String,
}

impl Bench {
    async fn start() -> Bench {
        let era25 = upstream(UpstreamConfig::default()).await;
        let era26 = stateless_upstream().await;
        let app = TestApp::spawn(Backend::Sqlite).await;
        register_pooled(&app, "era25", &era25.url(), json!({})).await;
        register_pooled(&app, "era26", &era26.url(), json!({})).await;
        let token = app.token("alice", &["reader"], &[], 600);
        Bench {
            app,
            era25,
            era26,
            token,
        }
    }

    fn servers(&self) -> [(&'static str, &Upstream); 2] {
        [("era25", &self.era25), ("era26", &self.era26)]
    }

    /// Sends the request to both servers; returns the answers (server id first) after checking
    /// that the request did not reach either upstream.
    async fn refused(
        &self,
        method: Method,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Vec<(&'static str, Answer)> {
        let mut answers = Vec::new();
        for (id, up) in self.servers() {
            let before = up.stats().requests.load(Ordering::Relaxed);
            let url = self.app.url(&format!("/servers/{id}/mcp"));
            let answer = send_raw(&url, &self.token, method.clone(), headers, body).await;
            // Give anything the gateway might have sent in the background a moment to land.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let after = up.stats().requests.load(Ordering::Relaxed);
            assert_eq!(
                after, before,
                "{id}: the refused request reached the upstream ({before} -> {after} requests); the gateway answered {answer:?}"
            );
            answers.push((id, answer));
        }
        answers
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

/// Asserts a 400 with JSON-RPC error `code` for `id`; returns the error object.
fn assert_rpc_error(server: &str, case: &str, answer: &Answer, code: i64, id: &Value) -> Value {
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "{server}: {case}: expected HTTP 400 with JSON-RPC {code}, got {} ({}) {}",
        answer.status,
        answer.content_type,
        answer.text
    );
    assert!(
        answer.content_type.starts_with("application/json"),
        "{server}: {case}: {} answered {:?}: {}",
        answer.status,
        answer.content_type,
        answer.text
    );
    let err = &answer.body["error"];
    assert_eq!(
        err["code"], code,
        "{server}: {case}: expected JSON-RPC {code}, got {}",
        answer.text
    );
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{server}: {case}: no error message: {}",
        answer.text
    );
    assert_eq!(answer.body["jsonrpc"], "2.0", "{server}: {case}: {}", answer.text);
    assert_eq!(
        &answer.body["id"], id,
        "{server}: {case}: the error names the request id: {}",
        answer.text
    );
    err.clone()
}

/// The standard headers of a 2026 request for `method`.
fn headers26(method: &str) -> Vec<(&'static str, &str)> {
    vec![("mcp-protocol-version", V2026), ("mcp-method", method)]
}

/// A JSON-RPC request `method` with `params` plus a `_meta` (none if `meta` is Null).
fn request(id: i64, method: &str, mut params: Value, meta: Value) -> Value {
    if !meta.is_null() {
        params["_meta"] = meta;
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Control: a well-formed 2026 request of each kind is answered 200 through both servers (so the
/// refusals below are for the defect each one carries, not for something else).
#[tokio::test]
async fn well_formed_2026_requests_are_answered() {
    let bench = Bench::start().await;
    for (id, up) in bench.servers() {
        let url = bench.app.url(&format!("/servers/{id}/mcp"));
        let discover = request(1, "server/discover", json!({}), meta(V2026));
        let a = send_raw(
            &url,
            &bench.token,
            Method::POST,
            &headers26("server/discover"),
            Some(&discover),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{id}: discover: {a:?}");
        assert_eq!(a.body["id"], 1, "{id}: {a:?}");
        let supported = a.body["result"]["supportedVersions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(supported.contains(&json!(V2026)), "{id}: discover: {a:?}");

        let list = request(2, "tools/list", json!({}), meta(V2026));
        let a = send_raw(&url, &bench.token, Method::POST, &headers26("tools/list"), Some(&list)).await;
        assert_eq!(a.status, StatusCode::OK, "{id}: tools/list: {a:?}");
        assert_eq!(a.body["id"], 2, "{id}: {a:?}");
        assert!(a.body["result"]["tools"].is_array(), "{id}: tools/list: {a:?}");

        let call = request(
            3,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "raw"}}),
            meta(V2026),
        );
        let mut h = headers26("tools/call");
        h.push(("mcp-name", "echo"));
        let a = send_raw(&url, &bench.token, Method::POST, &h, Some(&call)).await;
        assert_eq!(a.status, StatusCode::OK, "{id}: tools/call: {a:?}");
        assert_eq!(a.body["id"], 3, "{id}: {a:?}");
        assert_eq!(a.body["result"]["content"][0]["text"], "raw", "{id}: tools/call: {a:?}");
        assert!(up.stats().tool_calls.load(Ordering::Relaxed) >= 1, "{id}");
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_missing_version_header() {
    let bench = Bench::start().await;
    let body = request(10, "tools/list", json!({}), meta(V2026));
    let case = "no MCP-Protocol-Version header, _meta says 2026-07-28";
    for (server, a) in bench
        .refused(Method::POST, &[("mcp-method", "tools/list")], Some(&body))
        .await
    {
        assert_rpc_error(server, case, &a, HEADER_MISMATCH, &json!(10));
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_version_header_not_matching_meta() {
    let bench = Bench::start().await;
    let body = request(11, "tools/list", json!({}), meta("2025-11-25"));
    let case = "MCP-Protocol-Version 2026-07-28, _meta 2025-11-25";
    for (server, a) in bench.refused(Method::POST, &headers26("tools/list"), Some(&body)).await {
        assert_rpc_error(server, case, &a, HEADER_MISMATCH, &json!(11));
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_missing_mcp_method() {
    let bench = Bench::start().await;
    let body = request(12, "tools/list", json!({}), meta(V2026));
    let case = "no Mcp-Method header";
    for (server, a) in bench
        .refused(Method::POST, &[("mcp-protocol-version", V2026)], Some(&body))
        .await
    {
        assert_rpc_error(server, case, &a, HEADER_MISMATCH, &json!(12));
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_mcp_method_not_matching_the_body() {
    let bench = Bench::start().await;
    let body = request(13, "tools/list", json!({}), meta(V2026));
    let case = "Mcp-Method prompts/list, body tools/list";
    for (server, a) in bench
        .refused(Method::POST, &headers26("prompts/list"), Some(&body))
        .await
    {
        assert_rpc_error(server, case, &a, HEADER_MISMATCH, &json!(13));
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_tools_call_without_mcp_name() {
    let bench = Bench::start().await;
    let body = request(
        14,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "x"}}),
        meta(V2026),
    );
    let case = "tools/call without Mcp-Name";
    for (server, a) in bench.refused(Method::POST, &headers26("tools/call"), Some(&body)).await {
        assert_rpc_error(server, case, &a, HEADER_MISMATCH, &json!(14));
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_tools_call_with_mcp_name_not_matching() {
    let bench = Bench::start().await;
    let body = request(
        15,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "x"}}),
        meta(V2026),
    );
    let mut headers = headers26("tools/call");
    headers.push(("mcp-name", "add"));
    let case = "tools/call echo with Mcp-Name add";
    for (server, a) in bench.refused(Method::POST, &headers, Some(&body)).await {
        assert_rpc_error(server, case, &a, HEADER_MISMATCH, &json!(15));
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_missing_meta() {
    let bench = Bench::start().await;
    let body = request(16, "tools/list", json!({}), Value::Null);
    let case = "2026 headers, no _meta";
    for (server, a) in bench.refused(Method::POST, &headers26("tools/list"), Some(&body)).await {
        assert_rpc_error(server, case, &a, INVALID_PARAMS, &json!(16));
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_meta_without_client_capabilities() {
    let bench = Bench::start().await;
    let body = request(17, "tools/list", json!({}), json!({META_VERSION: V2026}));
    let case = "_meta without clientCapabilities";
    for (server, a) in bench.refused(Method::POST, &headers26("tools/list"), Some(&body)).await {
        assert_rpc_error(server, case, &a, INVALID_PARAMS, &json!(17));
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_unsupported_version() {
    let bench = Bench::start().await;
    let body = request(18, "server/discover", json!({}), meta("2099-01-01"));
    let headers = [
        ("mcp-protocol-version", "2099-01-01"),
        ("mcp-method", "server/discover"),
    ];
    let case = "version 2099-01-01 (header and _meta)";
    for (server, a) in bench.refused(Method::POST, &headers, Some(&body)).await {
        let err = assert_rpc_error(server, case, &a, UNSUPPORTED_VERSION, &json!(18));
        let supported = err["data"]["supported"].as_array().cloned().unwrap_or_default();
        assert!(
            supported.contains(&json!(V2026)),
            "{server}: data.supported lacks {V2026}: {}",
            a.text
        );
        assert_eq!(err["data"]["requested"], "2099-01-01", "{server}: {}", a.text);
    }
    bench.stop().await;
}

#[tokio::test]
async fn refused_2026_get_and_delete() {
    let bench = Bench::start().await;
    for method in [Method::GET, Method::DELETE] {
        for (server, a) in bench
            .refused(method.clone(), &[("mcp-protocol-version", V2026)], None)
            .await
        {
            assert_eq!(
                a.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{server}: {method} with MCP-Protocol-Version {V2026}: got {} ({}) {}",
                a.status,
                a.content_type,
                a.text
            );
        }
    }
    bench.stop().await;
}

/// 2026-07-28 notifications are relayed, never dropped (I10): a `notifications/cancelled` reaches
/// the upstream under the rewritten id of the request it names (the upstream never saw the
/// client's own id), and any other notification reaches the upstream too — through a session-era
/// upstream (the user's own session) and a sessionless one alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_of_2026_clients_reach_the_upstream() {
    let bench = Bench::start().await;
    for (id, up) in bench.servers() {
        let url = bench.app.url(&format!("/servers/{id}/mcp"));
        let calls = up.stats().tool_calls.load(Ordering::Relaxed);
        let slow = {
            let (url, token) = (url.clone(), bench.token.clone());
            tokio::spawn(async move {
                let call = request(
                    40,
                    "tools/call",
                    json!({"name": "slow", "arguments": {"ms": 1500}}),
                    meta(V2026),
                );
                let mut h = headers26("tools/call");
                h.push(("mcp-name", "slow"));
                send_raw(&url, &token, Method::POST, &h, Some(&call)).await
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while up.stats().tool_calls.load(Ordering::Relaxed) == calls {
            assert!(
                std::time::Instant::now() < deadline,
                "{id}: the slow call never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let note = |method: &str, params: Value| {
            let mut params = params;
            params["_meta"] = meta(V2026);
            json!({"jsonrpc": "2.0", "method": method, "params": params})
        };
        for (method, params) in [
            (
                "notifications/cancelled",
                json!({"requestId": 40, "reason": "changed my mind"}),
            ),
            ("notifications/roots/list_changed", json!({})),
        ] {
            let a = send_raw(
                &url,
                &bench.token,
                Method::POST,
                &headers26(method),
                Some(&note(method, params)),
            )
            .await;
            assert_eq!(a.status, StatusCode::ACCEPTED, "{id}: {method}: {a:?}");
        }
        let seen = |method: &str| -> Vec<Value> {
            up.stats()
                .notifications
                .lock()
                .map(|n| n.iter().filter(|v| v["method"] == method).cloned().collect())
                .unwrap_or_default()
        };
        let cancelled = seen("notifications/cancelled");
        assert_eq!(cancelled.len(), 1, "{id}: {cancelled:?}");
        let upstream_id = cancelled[0]["params"]["requestId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            upstream_id.starts_with("pg:"),
            "{id}: the cancellation names the request's rewritten id, not the client's: {cancelled:?}"
        );
        assert_eq!(seen("notifications/roots/list_changed").len(), 1, "{id}");
        let _ = slow.await;
    }
    bench.stop().await;
}
