//! The upstream MCP client: Streamable HTTP to session-era servers (2025-03-26 … 2025-11-25).
//!
//! One pooled HTTP client (keep-alive, HTTP/2 where the server offers it) serves every upstream
//! session; a session is just its URL, `Mcp-Session-Id`, negotiated protocol version and the
//! server's own headers ([`SessionTarget`]), so any node can talk to any upstream session. Answers
//! come back as JSON or as a `text/event-stream` that is parsed incrementally ([`EventStream`]) so
//! the node can pass events on as they arrive. A lost session (HTTP 404, or a 400 whose error
//! names the session, as the TypeScript SDK answers) is [`UpstreamError::SessionLost`].

pub mod sse;

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use sse::{SseEvent, SseParser};

/// Session-era protocol versions poolgate speaks upstream, oldest first.
pub const SESSION_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_SESSION_VERSION: &str = "2025-11-25";
pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// The sessionless revision: `server/discover` instead of a handshake, the version and client
/// capabilities in every request's `_meta`, and routing headers.
pub const STATELESS_VERSION: &str = "2026-07-28";
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
const ACCEPT: &str = "application/json, text/event-stream";

/// Bound on the handshake, pings and DELETE.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one forwarded request, streams included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JSON answer read into memory.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream session lost")]
    SessionLost,
    #[error("upstream answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

fn transport(e: reqwest::Error, timeout: Duration) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout(timeout)
    } else {
        UpstreamError::Unreachable(e.to_string())
    }
}

/// Where one upstream session lives and how to address it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTarget {
    pub url: String,
    /// None for a sessionless upstream.
    pub session_id: Option<String>,
    pub protocol_version: String,
    /// The server's own headers (its credentials), never the end user's token.
    pub headers: Vec<(String, String)>,
}

/// The outcome of a handshake.
#[derive(Clone, Debug, PartialEq)]
pub struct Initialized {
    pub session_id: Option<String>,
    pub protocol_version: String,
    /// The server's `initialize` result (capabilities, serverInfo, instructions), cached so that
    /// clients can be answered without a handshake of their own.
    pub result: Value,
}

/// An upstream answer to a POST.
pub enum Reply {
    /// 202: a notification or response was accepted.
    Accepted,
    /// A JSON body (one JSON-RPC message).
    Json(Value),
    /// A stream of events, to pass on as they arrive.
    Stream(EventStream),
}

/// An SSE answer, read incrementally.
pub struct EventStream {
    body: futures_util::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
}

impl EventStream {
    fn new(resp: reqwest::Response) -> Self {
        EventStream {
            body: resp.bytes_stream().boxed(),
            parser: SseParser::new(),
            ready: Default::default(),
        }
    }

    /// The next event; `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Result<SseEvent, UpstreamError>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            match self.body.next().await? {
                Ok(chunk) => match self.parser.push(&chunk) {
                    Ok(events) => self.ready.extend(events),
                    Err(e) => return Some(Err(UpstreamError::Protocol(e))),
                },
                Err(e) => return Some(Err(transport(e, REQUEST_TIMEOUT))),
            }
        }
    }
}

/// The shared HTTP client for all upstreams.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    http: reqwest::Client,
}

impl UpstreamClient {
    pub fn new() -> Result<UpstreamClient, UpstreamError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| UpstreamError::Protocol(format!("HTTP client: {e}")))?;
        Ok(UpstreamClient { http })
    }

    fn post(&self, target: &SessionTarget, body: Vec<u8>, timeout: Duration) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&target.url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .body(body);
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(id) = &target.session_id {
            req = req
                .header(SESSION_HEADER, id.as_str())
                .header(VERSION_HEADER, target.protocol_version.as_str());
        } else if target.protocol_version == STATELESS_VERSION {
            req = req.header(VERSION_HEADER, STATELESS_VERSION);
        }
        req
    }

    /// Sends one message in the target's era: a sessionless (2026-07-28) upstream gets the version
    /// and client capabilities in `_meta` and the `Mcp-Method`/`Mcp-Name` routing headers.
    pub async fn send_json(
        &self,
        target: &SessionTarget,
        msg: &Value,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        if target.protocol_version != STATELESS_VERSION {
            return self
                .send(target, session_era_message(msg).to_string().into_bytes(), timeout)
                .await;
        }
        let (body, method, name) = stateless_message(msg);
        let mut req = self.post(target, body.to_string().into_bytes(), timeout);
        if let Some(m) = method {
            req = req.header(METHOD_HEADER, m);
        }
        if let Some(n) = name {
            req = req.header(NAME_HEADER, n);
        }
        let resp = req.send().await.map_err(|e| transport(e, timeout))?;
        classify(resp, false, timeout).await
    }

    /// `server/discover`: the server's result when it speaks the sessionless revision, `None`
    /// when it does not (it then needs the `initialize` handshake).
    pub async fn discover(&self, url: &str, headers: &[(String, String)]) -> Result<Option<Value>, UpstreamError> {
        let target = SessionTarget {
            url: url.to_owned(),
            session_id: None,
            protocol_version: STATELESS_VERSION.to_owned(),
            headers: headers.to_vec(),
        };
        let id = format!("poolgate-discover-{}", uuid::Uuid::new_v4().simple());
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": {}});
        let answer = match self.send_json(&target, &msg, CONTROL_TIMEOUT).await {
            Ok(Reply::Json(v)) => v,
            Ok(Reply::Stream(mut s)) => find_response(&mut s, &id).await?,
            Ok(Reply::Accepted) | Err(UpstreamError::Http { .. }) | Err(UpstreamError::Protocol(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let speaks = answer
            .pointer("/result/supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(STATELESS_VERSION)));
        Ok(speaks.then(|| answer["result"].clone()))
    }

    /// Sends one JSON-RPC message; classifies the answer.
    pub async fn send(&self, target: &SessionTarget, body: Vec<u8>, timeout: Duration) -> Result<Reply, UpstreamError> {
        let resp = self
            .post(target, body, timeout)
            .send()
            .await
            .map_err(|e| transport(e, timeout))?;
        classify(resp, target.session_id.is_some(), timeout).await
    }

    /// The handshake: `initialize` (asking for `version`), then `notifications/initialized`.
    pub async fn initialize(
        &self,
        url: &str,
        headers: &[(String, String)],
        version: &str,
    ) -> Result<Initialized, UpstreamError> {
        let target = SessionTarget {
            url: url.to_owned(),
            session_id: None,
            protocol_version: version.to_owned(),
            headers: headers.to_vec(),
        };
        let init_id = format!("poolgate-init-{}", uuid::Uuid::new_v4().simple());
        let body = json!({
            "jsonrpc": "2.0", "id": init_id, "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
                "clientInfo": {"name": "poolgate", "version": env!("CARGO_PKG_VERSION")},
            }
        });
        let resp = self
            .post(&target, body.to_string().into_bytes(), CONTROL_TIMEOUT)
            .send()
            .await
            .map_err(|e| transport(e, CONTROL_TIMEOUT))?;
        let session_id = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = match classify(resp, false, CONTROL_TIMEOUT).await? {
            Reply::Json(v) => v,
            Reply::Stream(mut events) => find_response(&mut events, &init_id).await?,
            Reply::Accepted => return Err(UpstreamError::Protocol("initialize answered 202".into())),
        };
        if let Some(err) = answer.get("error") {
            return Err(UpstreamError::Protocol(format!("initialize refused: {err}")));
        }
        let result = answer
            .get("result")
            .cloned()
            .ok_or_else(|| UpstreamError::Protocol("initialize without result".into()))?;
        let negotiated = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(version)
            .to_owned();
        if !SESSION_VERSIONS.contains(&negotiated.as_str()) {
            return Err(UpstreamError::Protocol(format!(
                "upstream chose unsupported protocol version {negotiated}"
            )));
        }
        let session = SessionTarget {
            session_id: session_id.clone(),
            protocol_version: negotiated.clone(),
            ..target
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        match self
            .send(&session, note.to_string().into_bytes(), CONTROL_TIMEOUT)
            .await?
        {
            Reply::Accepted | Reply::Json(_) => {}
            Reply::Stream(mut s) => while s.next().await.is_some() {},
        }
        Ok(Initialized {
            session_id,
            protocol_version: negotiated,
            result,
        })
    }

    /// `ping`: Ok when the session answers.
    pub async fn ping(&self, target: &SessionTarget) -> Result<(), UpstreamError> {
        let id = format!("poolgate-ping-{}", uuid::Uuid::new_v4().simple());
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
        let answer = match self
            .send(target, body.to_string().into_bytes(), CONTROL_TIMEOUT)
            .await?
        {
            Reply::Json(v) => v,
            Reply::Stream(mut s) => find_response(&mut s, &id).await?,
            Reply::Accepted => return Err(UpstreamError::Protocol("ping answered 202".into())),
        };
        match answer.get("error") {
            Some(e) => Err(UpstreamError::Protocol(format!("ping failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Opens the session's GET event stream (server-initiated messages), resuming after
    /// `last_event_id` when given; `None` when the upstream offers no GET stream (405).
    pub async fn open_stream(
        &self,
        target: &SessionTarget,
        last_event_id: Option<&str>,
    ) -> Result<Option<EventStream>, UpstreamError> {
        let mut req = self.http.get(&target.url).header("accept", "text/event-stream");
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(id) = &target.session_id {
            req = req
                .header(SESSION_HEADER, id.as_str())
                .header(VERSION_HEADER, target.protocol_version.as_str());
        }
        if let Some(last) = last_event_id {
            req = req.header("last-event-id", last);
        }
        let resp = req.send().await.map_err(|e| transport(e, CONNECT_TIMEOUT))?;
        match classify(resp, target.session_id.is_some(), REQUEST_TIMEOUT).await {
            Ok(Reply::Stream(s)) => Ok(Some(s)),
            Ok(_) => Ok(None),
            Err(UpstreamError::Http { status: 405, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends the session upstream (DELETE); 404 and 405 count as done.
    pub async fn close(&self, target: &SessionTarget) -> Result<(), UpstreamError> {
        let Some(id) = &target.session_id else { return Ok(()) };
        let mut req = self
            .http
            .delete(&target.url)
            .timeout(CONTROL_TIMEOUT)
            .header(SESSION_HEADER, id.as_str())
            .header(VERSION_HEADER, target.protocol_version.as_str());
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.map_err(|e| transport(e, CONTROL_TIMEOUT))?;
        match resp.status().as_u16() {
            200..=299 | 404 | 405 => Ok(()),
            status => Err(UpstreamError::Http {
                status,
                body: read_text(resp).await,
            }),
        }
    }
}

/// The message without the sessionless revision's `_meta` keys, for a session-era upstream (a
/// 2026-07-28 client's request relayed to a session it does not know about).
pub fn session_era_message(msg: &Value) -> std::borrow::Cow<'_, Value> {
    let has_keys = msg
        .pointer("/params/_meta")
        .and_then(Value::as_object)
        .is_some_and(|m| m.keys().any(|k| k.starts_with("io.modelcontextprotocol/")));
    if !has_keys {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut out = msg.clone();
    if let Some(meta) = out.pointer_mut("/params/_meta").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty() {
            if let Some(params) = out.get_mut("params").and_then(Value::as_object_mut) {
                params.remove("_meta");
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The message with the sessionless `_meta` keys added, and its routing header values.
pub fn stateless_message(msg: &Value) -> (Value, Option<String>, Option<String>) {
    let mut out = msg.clone();
    let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
    if method.is_some() {
        if !out.get("params").is_some_and(Value::is_object) {
            out["params"] = json!({});
        }
        if !out["params"].get("_meta").is_some_and(Value::is_object) {
            out["params"]["_meta"] = json!({});
        }
        out["params"]["_meta"][META_VERSION] = json!(STATELESS_VERSION);
        if out["params"]["_meta"].get(META_CAPABILITIES).is_none() {
            out["params"]["_meta"][META_CAPABILITIES] = json!({});
        }
    }
    let name = match method.as_deref() {
        Some("tools/call") | Some("prompts/get") => msg.pointer("/params/name").and_then(Value::as_str),
        Some("resources/read") => msg.pointer("/params/uri").and_then(Value::as_str),
        _ => None,
    }
    .map(str::to_owned);
    (out, method, name)
}

async fn read_text(resp: reqwest::Response) -> String {
    let bytes = resp.bytes().await.unwrap_or_default();
    String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]).into_owned()
}

/// Turns an HTTP answer into a [`Reply`], recognising a lost session.
async fn classify(resp: reqwest::Response, has_session: bool, timeout: Duration) -> Result<Reply, UpstreamError> {
    let status = resp.status().as_u16();
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    match status {
        202 => Ok(Reply::Accepted),
        200 if is_sse => Ok(Reply::Stream(EventStream::new(resp))),
        200 => {
            let bytes = resp.bytes().await.map_err(|e| transport(e, timeout))?;
            if bytes.is_empty() {
                return Ok(Reply::Accepted);
            }
            if bytes.len() > MAX_BODY_BYTES {
                return Err(UpstreamError::Protocol(format!(
                    "answer larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            serde_json::from_slice(&bytes)
                .map(Reply::Json)
                .map_err(|e| UpstreamError::Protocol(format!("bad JSON: {e}")))
        }
        404 if has_session => Err(UpstreamError::SessionLost),
        400 if has_session => {
            let body = read_text(resp).await;
            if body.to_ascii_lowercase().contains("session") {
                Err(UpstreamError::SessionLost)
            } else {
                Err(UpstreamError::Http { status, body })
            }
        }
        _ => Err(UpstreamError::Http {
            status,
            body: read_text(resp).await,
        }),
    }
}

/// Reads events until the JSON-RPC response with `id`.
async fn find_response(events: &mut EventStream, id: &str) -> Result<Value, UpstreamError> {
    while let Some(event) = events.next().await {
        let event = event?;
        if let Ok(msg) = serde_json::from_str::<Value>(&event.data) {
            if msg.get("id").and_then(Value::as_str) == Some(id) && msg.get("method").is_none() {
                return Ok(msg);
            }
        }
    }
    Err(UpstreamError::Protocol(format!(
        "stream ended without the answer to {id}"
    )))
}
