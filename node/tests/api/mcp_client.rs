//! What the MCP data-plane tests (mcp.rs, strategies.rs, modern.rs, sdk.rs) share: a minimal
//! session-era Streamable HTTP client over reqwest, the project's test upstream, pooled server
//! registration, and two nodes sharing one Redis.

use poolgate_loadtests::upstream::{Upstream, UpstreamConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{redis_url, Backend, TestApp, TestDb};

/// A minimal session-era MCP client over reqwest.
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    user: String,
    /// The gateway's `Mcp-Session-Id`, sent with every request while set.
    pub session: Option<String>,
}

impl Client {
    pub fn new(app: &TestApp, server: &str, user: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            url: app.url(&format!("/servers/{server}/mcp")),
            token: app.token(user, &["reader"], &[], 600),
            user: user.to_owned(),
            session: None,
        }
    }

    /// The same client session, sent to another node.
    pub fn via(&self, app: &TestApp, server: &str) -> Client {
        Client {
            http: self.http.clone(),
            url: app.url(&format!("/servers/{server}/mcp")),
            token: app.token(&self.user, &["reader"], &[], 600),
            user: self.user.clone(),
            session: self.session.clone(),
        }
    }

    /// POSTs one JSON-RPC message; returns the status, the answer and the session id the gateway
    /// sent. A JSON answer comes as is (Null if empty); an event stream comes as the array of its
    /// events, the answer last.
    pub async fn post(&self, body: Value) -> (StatusCode, Value, Option<String>) {
        let mut req = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let sid = header(&resp, "mcp-session-id");
        let is_sse = header(&resp, "content-type").is_some_and(|c| c.starts_with("text/event-stream"));
        let text = resp.text().await.expect("body");
        let value = if is_sse {
            // The last data line is the answer.
            let answers: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect();
            json!(answers)
        } else if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
        };
        (status, value, sid)
    }

    /// `initialize` (a new client session) then `notifications/initialized`; returns the
    /// `initialize` answer.
    pub async fn initialize(&mut self) -> Value {
        self.session = None;
        let (status, body, sid) = self
            .post(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.session = Some(sid.unwrap_or_else(|| panic!("the gateway issues a session id: {body}")));
        let (status, _, _) = self
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        body
    }

    /// A tool call; returns the status and the answer as [`Client::post`] does.
    pub async fn call(&self, id: i64, tool: &str, args: Value) -> (StatusCode, Value) {
        let (status, body, _) =
            self.post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})).await;
        (status, body)
    }

    /// A tool call that must succeed; returns its result (from the last event when streamed).
    pub async fn call_ok(&self, id: i64, tool: &str, args: Value) -> Value {
        let (status, body) = self.call(id, tool, args).await;
        let body = match body {
            Value::Array(mut events) => events.pop().unwrap_or(Value::Null),
            body => body,
        };
        assert_eq!(status, StatusCode::OK, "{tool}: {body}");
        assert_eq!(body["id"], id, "{tool}: {body}");
        assert!(body["result"].is_object(), "{tool} failed: {body}");
        body["result"].clone()
    }

    /// Calls the counter; returns (count, upstream session) and asserts the id came back.
    pub async fn count(&self, id: i64) -> (u64, String) {
        let result = self.call_ok(id, "counter", json!({})).await;
        let sc = &result["structuredContent"];
        (
            sc["count"].as_u64().expect("count"),
            sc["session"].as_str().expect("session").to_owned(),
        )
    }

    pub async fn delete(&self) -> StatusCode {
        let mut req = self.http.delete(&self.url).bearer_auth(&self.token);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req.send().await.expect("sent").status()
    }
}

/// A response header's value, if present and text.
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The project's test upstream on a free loopback port.
pub async fn upstream(config: UpstreamConfig) -> Upstream {
    Upstream::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .expect("test upstream starts")
}

/// A sessionless (2026-07-28 only) test upstream.
pub async fn stateless_upstream() -> Upstream {
    upstream(UpstreamConfig {
        stateless: true,
        ..Default::default()
    })
    .await
}

/// `base` with every field of `over` (an object) set on it.
pub fn merged(mut base: Value, over: Value) -> Value {
    for (k, v) in over.as_object().expect("object") {
        base[k] = v.clone();
    }
    base
}

/// Registers `id` over `endpoints` with pooling on, no warm sessions, and the given pool fields.
/// Per-user quotas are off unless `pool` sets them: most tests fill a pool as one user on
/// purpose (the fairness tests set their own).
pub async fn register_endpoints(app: &TestApp, id: &str, endpoints: Value, pool: Value) {
    let extra = json!({"endpoints": endpoints, "pool_enabled": true, "pool_min_size": 0,
        "pool_max_sessions_per_user": 0, "pool_max_inflight_per_user": 0});
    app.create_server(id, merged(extra, pool)).await;
}

/// Registers `id` in front of the MCP endpoint `url` with pooling on and the given pool fields.
pub async fn register(app: &TestApp, id: &str, url: &str, pool: Value) {
    register_endpoints(app, id, json!([{ "url": url }]), pool).await;
}

/// Two nodes on one PostgreSQL database sharing one Redis under `prefix`, with `extra` settings,
/// both ready.
pub async fn two_nodes(prefix: &str, extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let db = TestDb::new(Backend::Postgres).await;
    let shared = TestDb::new_shared(&db.url);
    let redis = redis_url();
    let mut set = vec![("REDIS_URL", redis.as_str()), ("REDIS_POOL_PREFIX", prefix)];
    set.extend_from_slice(extra);
    let a = TestApp::spawn_on(db, &set, &[]).await.wait_ready().await;
    let b = TestApp::spawn_on(shared, &set, &[]).await.wait_ready().await;
    (a, b)
}

/// A chaos proxy in front of the test Redis, and the Redis URL that goes through it.
pub async fn redis_through_proxy() -> (poolgate_loadtests::chaos::ChaosProxy, String) {
    let redis = url::Url::parse(&redis_url()).expect("redis url");
    let target = format!(
        "{}:{}",
        redis.host_str().unwrap_or("127.0.0.1"),
        redis.port().unwrap_or(6379)
    );
    let proxy = poolgate_loadtests::chaos::ChaosProxy::start(target.parse().expect("addr"))
        .await
        .expect("proxy");
    let mut via = redis;
    let _ = via.set_port(Some(proxy.addr.port()));
    (proxy, via.to_string())
}

/// A Redis key prefix of one test's own.
pub fn unique_prefix() -> String {
    format!("pgt:{}:", &uuid::Uuid::new_v4().simple().to_string()[..12])
}
