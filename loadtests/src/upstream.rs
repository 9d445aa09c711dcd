//! A fast test upstream: a Streamable HTTP MCP server (session era: 2025-03-26, 2025-06-18,
//! 2025-11-25) used by the tests and the load scenarios.
//!
//! Tools: `echo {text}`, `add {a, b}`, `slow {ms, steps}` (progress notifications over SSE when the
//! request carries a progress token), and `counter {}` — a counter per upstream session, so a test
//! can prove that two clients never share an upstream session. A configurable handshake cost (on
//! `initialize`) and per-call latency model real servers. `GET /stats` reports what happened
//! (initializes, deletes, calls, live sessions) so tests can observe the gateway's behaviour.
//! [`Upstream::start_tls`] serves the same over HTTPS (the upstream TLS tests).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Protocol versions this server speaks, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
pub const SESSION_HEADER: &str = "mcp-session-id";

/// The sessionless revision: no handshake, `server/discover`, version and capabilities in every
/// request's `_meta`, routing headers.
pub const STATELESS_VERSION: &str = "2026-07-28";
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// How the upstream behaves.
#[derive(Clone, Debug, Default)]
pub struct UpstreamConfig {
    /// Added to every `initialize` (the cost of creating an upstream session).
    pub handshake: Duration,
    /// Added to every request other than `initialize`.
    pub latency: Duration,
    /// Speak only the sessionless 2026-07-28 revision (strictly: every request must carry the
    /// version header, matching `_meta`, and `Mcp-Method`; anything else is refused with 400).
    pub stateless: bool,
    /// Answer requests as the official SDK servers do when the client accepts it: an event
    /// stream whose headers go out first and each event after them in a write of its own (a
    /// server answering in one write hid a 40 ms Nagle stall from the load tests).
    pub sse: bool,
}

/// What happened, for tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub initializes: AtomicU64,
    /// `server/discover` calls (stateless mode).
    pub discovers: AtomicU64,
    /// Requests refused for a missing or mismatched version header, `_meta` or `Mcp-Method`.
    pub refused: AtomicU64,
    pub deletes: AtomicU64,
    pub requests: AtomicU64,
    pub tool_calls: AtomicU64,
    /// Every notification received (method and params), oldest first (bounded).
    pub notifications: Mutex<Vec<Value>>,
}

/// Most notifications [`Stats::notifications`] keeps.
const NOTIFICATIONS_KEPT: usize = 1000;

#[derive(Debug, Default)]
struct Session {
    counter: u64,
}

struct Inner {
    config: UpstreamConfig,
    sessions: Mutex<HashMap<String, Session>>,
    /// Stateless mode has no sessions: one counter for everyone.
    global_counter: AtomicU64,
    stats: Stats,
}

/// A running upstream.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
    stop: Arc<tokio::sync::Notify>,
    /// `https` for [`Upstream::start_tls`].
    scheme: &'static str,
}

impl Upstream {
    /// Binds `addr` (use port 0 for any free port) and serves in the background.
    pub async fn start(addr: SocketAddr, config: UpstreamConfig) -> std::io::Result<Upstream> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Inner::new(config);
        let app = router(inner.clone());
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(
                listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                app,
            )
            .with_graceful_shutdown(async move { stopped.notified().await })
            .await;
        });
        Ok(Upstream {
            inner,
            addr,
            stop,
            scheme: "http",
        })
    }

    /// As [`Upstream::start`], over HTTPS (HTTP/1.1) with `tls` — its certificate, and a client
    /// verifier when the test wants client certificates. A connection whose handshake fails is
    /// dropped; [`Upstream::url`] is `https://…`.
    pub async fn start_tls(
        addr: SocketAddr,
        config: UpstreamConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Upstream> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Inner::new(config);
        let app = router(inner.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                    () = stopped.notified() => return,
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Upstream {
            inner,
            addr,
            stop,
            scheme: "https",
        })
    }

    /// Stops listening (in-flight requests finish); every session it held is gone. Starting a
    /// new upstream on the same address models a restarted server.
    pub async fn stop(&self) {
        self.stop.notify_one();
        // Wait until the port is free again.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The MCP endpoint URL.
    pub fn url(&self) -> String {
        format!("{}://{}/mcp", self.scheme, self.addr)
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn stateless(&self) -> bool {
        self.inner.config.stateless
    }

    pub fn live_sessions(&self) -> usize {
        self.inner.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Forgets every session while staying up (a server that restarted behind the same address,
    /// or expired them): later requests on them get 404. Returns how many there were.
    pub fn forget_sessions(&self) -> usize {
        self.inner
            .sessions
            .lock()
            .map(|mut s| std::mem::take(&mut *s).len())
            .unwrap_or(0)
    }
}

/// A server TLS configuration for [`Upstream::start_tls`]: `chain` the certificate chain (DER,
/// leaf first), `key` its PKCS#8 private key (DER); with `client_ca` (a DER CA certificate) every
/// client must present a certificate it signed.
pub fn server_tls(
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let chain: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let builder = rustls::ServerConfig::builder();
    let config = match client_ca {
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(ca))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

impl Inner {
    fn new(config: UpstreamConfig) -> Arc<Inner> {
        Arc::new(Inner {
            config,
            sessions: Mutex::default(),
            global_counter: AtomicU64::new(0),
            stats: Stats::default(),
        })
    }
}

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/mcp", get(no_stream).post(post).delete(delete))
        .route("/stats", get(stats))
        .with_state(inner)
}

async fn no_stream() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

async fn stats(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let s = &inner.stats;
    Json(json!({
        "initializes": s.initializes.load(Ordering::Relaxed),
        "deletes": s.deletes.load(Ordering::Relaxed),
        "requests": s.requests.load(Ordering::Relaxed),
        "tool_calls": s.tool_calls.load(Ordering::Relaxed),
        "live_sessions": inner.sessions.lock().map(|m| m.len()).unwrap_or(0),
    }))
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

async fn delete(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> StatusCode {
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    let removed = inner
        .sessions
        .lock()
        .map(|mut s| s.remove(id).is_some())
        .unwrap_or(false);
    if removed {
        inner.stats.deletes.fetch_add(1, Ordering::Relaxed);
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn post(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let sse = inner.config.sse && accepts_sse(&headers);
    let resp = answer(inner, headers, body).await;
    if sse {
        as_event_stream(resp).await
    } else {
        resp
    }
}

fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"))
}

/// A JSON answer re-sent as the SDK servers send it: `text/event-stream` headers first, then
/// the message as one event in a later write (the body is not ready when the headers go out).
async fn as_event_stream(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if resp.status() != StatusCode::OK || !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(json) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let event = futures_util::stream::once(async move {
        // Not ready on the first poll: the server flushes the headers on their own first.
        tokio::task::yield_now().await;
        let mut e = b"event: message\ndata: ".to_vec();
        e.extend_from_slice(&json);
        e.extend_from_slice(b"\n\n");
        Ok::<_, Infallible>(Bytes::from(e))
    });
    parts.headers.remove("content-length");
    parts
        .headers
        .insert("content-type", HeaderValue::from_static("text/event-stream"));
    parts
        .headers
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    Response::from_parts(parts, Body::from_stream(event))
}

async fn answer(inner: Arc<Inner>, headers: HeaderMap, body: Bytes) -> Response {
    inner.stats.requests.fetch_add(1, Ordering::Relaxed);
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return json_response(StatusCode::BAD_REQUEST, rpc_error(&Value::Null, -32700, "parse error"));
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        // A response from the client (to a server request): accepted.
        return StatusCode::ACCEPTED.into_response();
    };
    if msg.get("id").is_none() {
        if let Ok(mut n) = inner.stats.notifications.lock() {
            if n.len() < NOTIFICATIONS_KEPT {
                n.push(json!({"method": method, "params": msg.get("params").cloned().unwrap_or(Value::Null)}));
            }
        }
    }
    if inner.config.stateless {
        return stateless(&inner, &headers, &msg, id, method).await;
    }
    if method == "initialize" {
        tokio::time::sleep(inner.config.handshake).await;
        let asked = msg
            .pointer("/params/protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = SUPPORTED_VERSIONS
            .iter()
            .find(|v| **v == asked)
            .unwrap_or(&SUPPORTED_VERSIONS[2]);
        let session = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut s) = inner.sessions.lock() {
            s.insert(session.clone(), Session::default());
        }
        inner.stats.initializes.fetch_add(1, Ordering::Relaxed);
        let result = json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "poolgate-test-upstream", "version": env!("CARGO_PKG_VERSION")},
        });
        let mut resp = json_response(StatusCode::OK, json!({"jsonrpc": "2.0", "id": id, "result": result}));
        if let Ok(v) = HeaderValue::from_str(&session) {
            resp.headers_mut().insert(SESSION_HEADER, v);
        }
        return resp;
    }
    let Some(session) = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error(&id, -32600, "Bad Request: missing session id"),
        );
    };
    if !inner.sessions.lock().map(|s| s.contains_key(&session)).unwrap_or(false) {
        return json_response(StatusCode::NOT_FOUND, rpc_error(&id, -32001, "Session not found"));
    }
    if msg.get("id").is_none() {
        return StatusCode::ACCEPTED.into_response(); // a notification
    }
    tokio::time::sleep(inner.config.latency).await;
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "ping" => json_response(StatusCode::OK, json!({"jsonrpc": "2.0", "id": id, "result": {}})),
        "tools/list" => json_response(
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools()}}),
        ),
        "tools/call" => call_tool(&inner, &session, id, &params, &headers).await,
        _ => json_response(
            StatusCode::OK,
            rpc_error(&id, -32601, &format!("Method not found: {method}")),
        ),
    }
}

/// The 2026-07-28 revision: validate the routing headers and `_meta`, then answer.
async fn stateless(inner: &Arc<Inner>, headers: &HeaderMap, msg: &Value, id: Value, method: &str) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let refuse = |why: String| {
        inner.stats.refused.fetch_add(1, Ordering::Relaxed);
        json_response(StatusCode::BAD_REQUEST, rpc_error(&id, -32600, &why))
    };
    let meta_version = msg
        .pointer("/params/_meta")
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str);
    if header("mcp-protocol-version") != STATELESS_VERSION {
        return refuse(format!("MCP-Protocol-Version must be {STATELESS_VERSION}"));
    }
    if meta_version != Some(STATELESS_VERSION) {
        return refuse("_meta protocol version missing or not matching the header".into());
    }
    if msg
        .pointer("/params/_meta")
        .and_then(|m| m.get(META_CAPABILITIES))
        .is_none()
    {
        return refuse("_meta client capabilities missing".into());
    }
    if header("mcp-method") != method {
        return refuse("Mcp-Method header missing or not matching the method".into());
    }
    if msg.get("id").is_none() {
        return StatusCode::ACCEPTED.into_response();
    }
    tokio::time::sleep(inner.config.latency).await;
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "server/discover" => {
            inner.stats.discovers.fetch_add(1, Ordering::Relaxed);
            let result = json!({
                "supportedVersions": [STATELESS_VERSION],
                "capabilities": {"tools": {"listChanged": false}},
                "instructions": "stateless test upstream",
                // Where the revision puts the server's identity (not at the top level).
                "_meta": {"io.modelcontextprotocol/serverInfo":
                    {"name": "poolgate-test-upstream", "version": env!("CARGO_PKG_VERSION")}},
            });
            json_response(StatusCode::OK, json!({"jsonrpc": "2.0", "id": id, "result": result}))
        }
        "tools/list" => json_response(
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools()}}),
        ),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
            if header("mcp-name") != name {
                return refuse("Mcp-Name header missing or not matching the tool".into());
            }
            if name == "counter" {
                inner.stats.tool_calls.fetch_add(1, Ordering::Relaxed);
                let n = inner.global_counter.fetch_add(1, Ordering::Relaxed) + 1;
                return json_response(StatusCode::OK, text_result(&id, n.to_string(), json!({"count": n})));
            }
            call_tool(inner, "", id, &params, headers).await
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            rpc_error(&id, -32601, &format!("Method not found: {method}")),
        ),
    }
}

fn tools() -> Value {
    let schema = |props: Value| json!({"type": "object", "properties": props});
    json!([
        {"name": "echo", "description": "Echoes text back", "inputSchema": schema(json!({"text": {"type": "string"}}))},
        {"name": "add", "description": "Adds two numbers", "inputSchema": schema(json!({"a": {"type": "number"}, "b": {"type": "number"}}))},
        {"name": "slow", "description": "Sleeps ms milliseconds, reporting progress in steps",
         "inputSchema": schema(json!({"ms": {"type": "integer"}, "steps": {"type": "integer"}}))},
        {"name": "counter", "description": "Increments and returns a counter kept per upstream session", "inputSchema": schema(json!({}))},
    ])
}

fn text_result(id: &Value, text: String, structured: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}], "structuredContent": structured}})
}

async fn call_tool(inner: &Arc<Inner>, session: &str, id: Value, params: &Value, headers: &HeaderMap) -> Response {
    inner.stats.tool_calls.fetch_add(1, Ordering::Relaxed);
    let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
    let args = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
    match name {
        "echo" => {
            let text = args.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
            json_response(StatusCode::OK, text_result(&id, text.clone(), json!({"text": text})))
        }
        "add" => {
            let a = args.get("a").and_then(Value::as_f64).unwrap_or(0.0);
            let b = args.get("b").and_then(Value::as_f64).unwrap_or(0.0);
            json_response(
                StatusCode::OK,
                text_result(&id, format!("{}", a + b), json!({"sum": a + b})),
            )
        }
        "counter" => {
            let count = inner
                .sessions
                .lock()
                .ok()
                .and_then(|mut s| {
                    s.get_mut(session).map(|sess| {
                        sess.counter += 1;
                        sess.counter
                    })
                })
                .unwrap_or(0);
            json_response(
                StatusCode::OK,
                text_result(&id, count.to_string(), json!({"count": count, "session": session})),
            )
        }
        "slow" => {
            let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(100).min(60_000);
            let steps = args.get("steps").and_then(Value::as_u64).unwrap_or(0).min(100);
            let token = params.pointer("/_meta/progressToken").cloned();
            match token.filter(|_| steps > 0 && accepts_sse(headers)) {
                None => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    json_response(
                        StatusCode::OK,
                        text_result(&id, format!("slept {ms} ms"), json!({"ms": ms})),
                    )
                }
                Some(token) => sse_progress(id, token, ms, steps),
            }
        }
        other => json_response(
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": format!("unknown tool {other}")}], "isError": true}}),
        ),
    }
}

/// `steps` progress notifications spread over `ms`, then the result, as one SSE stream.
fn sse_progress(id: Value, token: Value, ms: u64, steps: u64) -> Response {
    let step = Duration::from_millis(ms / steps.max(1));
    let stream = futures_util::stream::unfold(0u64, move |i| {
        let (id, token) = (id.clone(), token.clone());
        async move {
            if i > steps {
                return None;
            }
            let msg = if i < steps {
                tokio::time::sleep(step).await;
                json!({"jsonrpc": "2.0", "method": "notifications/progress",
                       "params": {"progressToken": token, "progress": i + 1, "total": steps}})
            } else {
                text_result(&id, format!("slept {ms} ms"), json!({"ms": ms}))
            };
            Some((
                Ok::<_, Infallible>(Bytes::from(format!("event: message\ndata: {msg}\n\n"))),
                i + 1,
            ))
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/event-stream"));
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}
