//! A minimal session-era MCP client over Streamable HTTP, written for measuring: no retries, no
//! hidden waits, every failure classified (HTTP status, JSON-RPC error code, timeout, ...) so
//! the report can count errors by kind.
//!
//! Handshake: `initialize` (protocol 2025-11-25) → the `Mcp-Session-Id` response header →
//! `notifications/initialized`; then requests carry the session id and `MCP-Protocol-Version`.
//! Answers may be `application/json` or a `text/event-stream` whose event carrying the request's
//! id is the answer (progress notifications before it are skipped). Targets must be loopback
//! addresses ([`check_loopback`]); redirects are never followed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};

pub const PROTOCOL_VERSION: &str = "2025-11-25";
const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// Largest answer body read (an echo answer is a few hundred bytes).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Refuses anything but a loopback target: `localhost`, 127.0.0.0/8 or ::1, over http(s).
pub fn check_loopback(raw: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("{raw:?}: only http:// and https:// targets"));
    }
    let ok = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    if !ok {
        return Err(format!(
            "{raw:?}: refused, the load generator only targets loopback addresses (localhost, 127.0.0.0/8, ::1)"
        ));
    }
    Ok(u)
}

/// Why a request failed, as counted in the report.
#[derive(Clone, Debug, PartialEq)]
pub enum CallError {
    /// Non-2xx status, with the JSON-RPC error code of the body when it had one.
    Http(u16, Option<i64>),
    /// 2xx carrying a JSON-RPC error.
    Rpc(i64),
    /// A tool result with `isError: true`.
    Tool,
    Timeout,
    Connect,
    Transport(String),
    /// An answer that is not a JSON-RPC response to this request.
    Protocol(String),
}

impl CallError {
    /// The key under which the report counts this error.
    pub fn kind(&self) -> String {
        match self {
            CallError::Http(s, _) => format!("http_{s}"),
            CallError::Rpc(c) => format!("rpc_{c}"),
            CallError::Tool => "tool_error".into(),
            CallError::Timeout => "timeout".into(),
            CallError::Connect => "connect".into(),
            CallError::Transport(_) => "transport".into(),
            CallError::Protocol(_) => "protocol".into(),
        }
    }

    pub fn is_503(&self) -> bool {
        matches!(self, CallError::Http(503, _))
    }

    /// The server no longer knows the session: the client must initialize again.
    pub fn session_lost(&self) -> bool {
        matches!(self, CallError::Http(404, _))
    }

    fn from_reqwest(e: &reqwest::Error) -> CallError {
        if e.is_timeout() {
            CallError::Timeout
        } else if e.is_connect() {
            CallError::Connect
        } else {
            CallError::Transport(e.to_string())
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Http(s, Some(c)) => write!(f, "HTTP {s} (JSON-RPC {c})"),
            CallError::Http(s, None) => write!(f, "HTTP {s}"),
            CallError::Rpc(c) => write!(f, "JSON-RPC error {c}"),
            CallError::Tool => f.write_str("tool result with isError"),
            CallError::Timeout => f.write_str("timeout"),
            CallError::Connect => f.write_str("connection refused or failed"),
            CallError::Transport(e) => write!(f, "transport: {e}"),
            CallError::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

/// One open MCP client session.
#[derive(Debug)]
pub struct Session {
    pub url: String,
    /// `None` when the server issued no session id (a stateless server).
    pub id: Option<String>,
    /// Bearer token sent with every request of this session.
    token: Option<String>,
    next_id: AtomicU64,
}

impl Session {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A shared HTTP client (connection pool) for many sessions.
#[derive(Clone)]
pub struct McpClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl McpClient {
    pub fn new(timeout: Duration) -> Result<McpClient, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(McpClient { http, timeout })
    }

    fn headers(token: Option<&str>, session: Option<&Session>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        if let Some(t) = token {
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}")) {
                h.insert(AUTHORIZATION, v);
            }
        }
        if let Some(s) = session {
            if let Some(id) = s.id.as_deref().and_then(|id| HeaderValue::from_str(id).ok()) {
                h.insert(SESSION_HEADER, id);
            }
            h.insert(VERSION_HEADER, HeaderValue::from_static(PROTOCOL_VERSION));
        }
        h
    }

    /// POSTs one message; `Ok(None)` for 202 Accepted, else the answer to `id`.
    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        session: Option<&Session>,
        body: &Value,
        id: Option<u64>,
    ) -> Result<(Option<Value>, Option<String>), CallError> {
        let resp = self
            .http
            .post(url)
            .headers(Self::headers(token, session))
            .timeout(self.timeout)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| CallError::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let sid = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let bytes = resp.bytes().await.map_err(|e| CallError::from_reqwest(&e))?;
        if bytes.len() > MAX_BODY {
            return Err(CallError::Protocol(format!("answer of {} bytes", bytes.len())));
        }
        if status == 202 {
            return Ok((None, sid));
        }
        if !(200..300).contains(&status) {
            let code = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.pointer("/error/code").and_then(Value::as_i64));
            return Err(CallError::Http(status, code));
        }
        let Some(id) = id else {
            return Ok((None, sid));
        };
        let answer = if sse {
            answer_in_stream(&bytes, id)?
        } else {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| CallError::Protocol(format!("JSON: {e}")))?
        };
        if answer.get("id").and_then(Value::as_u64) != Some(id) {
            return Err(CallError::Protocol("answer for another id".into()));
        }
        if let Some(err) = answer.get("error") {
            return Err(CallError::Rpc(err.get("code").and_then(Value::as_i64).unwrap_or(0)));
        }
        match answer.get("result") {
            Some(r) => Ok((Some(r.clone()), sid)),
            None => Err(CallError::Protocol("neither result nor error".into())),
        }
    }

    /// `initialize` + `notifications/initialized`, with `token` as the bearer token.
    pub async fn open(&self, url: &str, token: Option<&str>) -> Result<Session, CallError> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "poolgate-loadgen", "version": env!("CARGO_PKG_VERSION")}}});
        let (_, sid) = self.post(url, token, None, &init, Some(0)).await?;
        let session = Session {
            url: url.to_owned(),
            id: sid,
            token: token.map(str::to_owned),
            next_id: AtomicU64::new(1),
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(url, token, Some(&session), &note, None).await?;
        Ok(session)
    }

    /// One request on an open session; the `result` on success.
    pub async fn request(&self, session: &Session, method: &str, params: Value) -> Result<Value, CallError> {
        let id = session.next_id();
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        match self
            .post(&session.url, session.token.as_deref(), Some(session), &msg, Some(id))
            .await?
        {
            (Some(result), _) => Ok(result),
            (None, _) => Err(CallError::Protocol("202 for a request".into())),
        }
    }

    /// `tools/call`; a result with `isError: true` is an error.
    pub async fn call_tool(&self, session: &Session, name: &str, args: Value) -> Result<Value, CallError> {
        let result = self
            .request(session, "tools/call", json!({"name": name, "arguments": args}))
            .await?;
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Err(CallError::Tool);
        }
        Ok(result)
    }

    /// DELETE the session (a server without DELETE answers 405: counted as closed).
    pub async fn close(&self, session: &Session) -> Result<(), CallError> {
        let resp = self
            .http
            .delete(&session.url)
            .headers(Self::headers(session.token.as_deref(), Some(session)))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| CallError::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let _ = resp.bytes().await;
        if (200..300).contains(&status) || status == 405 {
            Ok(())
        } else {
            Err(CallError::Http(status, None))
        }
    }
}

/// The JSON-RPC answer to `id` in an SSE body (events separated by blank lines; an event's
/// `data:` lines joined with newlines).
fn answer_in_stream(body: &[u8], id: u64) -> Result<Value, CallError> {
    let text = std::str::from_utf8(body).map_err(|_| CallError::Protocol("SSE body is not UTF-8".into()))?;
    let mut data = String::new();
    let check = |data: &mut String| -> Option<Value> {
        if data.is_empty() {
            return None;
        }
        let found = serde_json::from_str::<Value>(data)
            .ok()
            .filter(|v| v.get("id").and_then(Value::as_u64) == Some(id) && v.get("method").is_none());
        data.clear();
        found
    };
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if let Some(v) = check(&mut data) {
                return Ok(v);
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    check(&mut data).ok_or_else(|| CallError::Protocol("no answer in the event stream".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(check_loopback("http://127.0.0.1:3001/mcp").is_ok());
        assert!(check_loopback("http://127.9.9.9/mcp").is_ok());
        assert!(check_loopback("http://localhost:4444/servers/a/mcp").is_ok());
        assert!(check_loopback("http://[::1]:80/mcp").is_ok());
        assert!(check_loopback("http://10.0.0.1/mcp").is_err());
        assert!(check_loopback("http://example.com/mcp").is_err());
        assert!(check_loopback("http://0.0.0.0/mcp").is_err());
        assert!(check_loopback("ftp://127.0.0.1/").is_err());
    }

    #[test]
    fn finds_the_answer_after_notifications() {
        let body =
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n\
event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":true}}\r\n\r\n";
        let v = answer_in_stream(body, 7).expect("answer");
        assert_eq!(v["result"]["ok"], true);
        assert!(answer_in_stream(body, 8).is_err());
        // No trailing blank line.
        let v = answer_in_stream(b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", 1).expect("answer");
        assert!(v.get("result").is_some());
    }
}
