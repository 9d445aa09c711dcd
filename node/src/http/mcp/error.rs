//! Every error the MCP endpoint answers: one type, [`McpError`], and one table
//! ([`McpError::parts`]) from each kind to its HTTP status and JSON-RPC code. The codes are
//! defined here and nowhere else ([`code`]).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use poolgate_control::slots::SlotError;
use poolgate_control::{ControlError, QuotaKind};
use poolgate_upstream::UpstreamError;

/// JSON-RPC error codes the gateway answers with.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Server-defined: the session is unknown (the SDKs re-initialize on HTTP 404).
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// Server-defined: no upstream session became free within `pool_timeout`.
    pub const POOL_EXHAUSTED: i64 = -32002;
    /// Server-defined: this node is at its cap on concurrent requests; retry (any node serves).
    pub const NODE_OVERLOADED: i64 = -32010;
    /// Server-defined: the upstream could not be reached or failed.
    pub const UPSTREAM_ERROR: i64 = -32003;
    /// Server-defined: the client re-used a request id that is still in flight.
    pub const DUPLICATE_ID: i64 = -32004;
    /// Server-defined: the caller's rate limit or a per-user quota refused the request (HTTP 429).
    pub const TOO_MANY_REQUESTS: i64 = -32005;
    /// Server-defined (as the SDK servers answer it): the request's `Origin` or `Host` is refused.
    pub const FORBIDDEN: i64 = -32000;
    /// 2026-07-28: a routing header does not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the requested protocol version is not served.
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// Why the gateway answers a client message itself.
#[derive(Debug)]
pub enum McpError {
    /// The body is not JSON.
    Parse(String),
    /// Not one JSON-RPC object, or a session-era request without its session header.
    InvalidRequest(&'static str),
    /// No such server (the name as the client gave it, when known).
    UnknownServer(Option<String>),
    /// The configuration store could not be read.
    StoreUnavailable,
    /// An unknown, expired, tampered or foreign session id; or the session's binding ended.
    SessionNotFound,
    /// No upstream session became free within `pool_timeout` (or the admission bound).
    Exhausted(Duration),
    /// Admission refused at once: the expected wait is past what the pool can serve.
    PoolOverloaded(u64),
    /// This node is at `SERVER_MAX_CONCURRENT_REQUESTS`: refused at once, before any work.
    Overloaded,
    /// The request body did not arrive within `SERVER_BODY_READ_TIMEOUT`.
    BodyTimeout(Duration),
    /// The control plane failed (logged; the client is told to retry).
    Coordination,
    /// The upstream failed or could not be reached.
    Upstream(String),
    /// The client re-used a request id still in flight in its session (I9).
    DuplicateId,
    /// The server's endpoint list changed while a slot was being created.
    EndpointsChanged,
    /// The binding changed while its slot was being created.
    BindingChanged,
    /// The server has no endpoint at all.
    NoEndpoint,
    /// A client session id could not be issued.
    SessionId(String),
    /// GET on a session without a server-initiated stream.
    NoStream(&'static str),
    /// 2026-07-28: `_meta` is missing or incomplete.
    InvalidParams(String),
    /// 2026-07-28: a routing header does not match the body.
    HeaderMismatch(String),
    /// 2026-07-28: the version in `_meta` is not served.
    UnsupportedVersion {
        supported: Vec<&'static str>,
        requested: String,
    },
    /// A method the gateway does not offer here.
    MethodNotFound { method: String, message: String },
    /// `Origin` (or, on a loopback bind, `Host`) refused: DNS rebinding protection.
    Forbidden(String),
    /// The upstream refused the request with an HTTP 4xx: relayed with its status, and with its
    /// JSON-RPC error object when it sent one (else `summary` names the status).
    Refused {
        status: StatusCode,
        error: Option<Value>,
        summary: String,
    },
    /// Every endpoint of the server is failing (circuit breakers open): fail fast.
    CircuitOpen,
    /// A second GET stream for a client session that has one open.
    StreamConflict,
    /// The request body is over the MCP endpoint's limit (bytes).
    TooLarge(usize),
    /// A `Content-Type` that is not JSON (what the client sent, shortened).
    UnsupportedMediaType(String),
    /// The caller's rate limit (`pool_rate_limit`) refused the request.
    RateLimited { retry_after_ms: u64, rate: u32, burst: u32 },
    /// The caller holds as many client sessions or requests in flight as one user may.
    OverQuota { quota: QuotaKind, limit: u32 },
}

impl McpError {
    /// The one table: HTTP status and JSON-RPC code of each kind (`in_band`: the error answers
    /// a request, so a failed upstream is reported in the JSON-RPC answer with HTTP 200).
    fn parts(&self, in_band: bool) -> (StatusCode, i64) {
        use code::*;
        match self {
            McpError::Parse(_) => (StatusCode::BAD_REQUEST, PARSE_ERROR),
            McpError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, INVALID_REQUEST),
            McpError::UnknownServer(_) => (StatusCode::NOT_FOUND, INVALID_REQUEST),
            McpError::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, INTERNAL_ERROR),
            McpError::SessionNotFound => (StatusCode::NOT_FOUND, SESSION_NOT_FOUND),
            McpError::Exhausted(_) | McpError::PoolOverloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, POOL_EXHAUSTED),
            McpError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, NODE_OVERLOADED),
            McpError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, INVALID_REQUEST),
            McpError::Coordination => (StatusCode::SERVICE_UNAVAILABLE, INTERNAL_ERROR),
            McpError::Upstream(_) if in_band => (StatusCode::OK, UPSTREAM_ERROR),
            McpError::Upstream(_) => (StatusCode::BAD_GATEWAY, UPSTREAM_ERROR),
            McpError::DuplicateId => (StatusCode::OK, DUPLICATE_ID),
            McpError::EndpointsChanged => (StatusCode::OK, INTERNAL_ERROR),
            McpError::BindingChanged => (StatusCode::SERVICE_UNAVAILABLE, INTERNAL_ERROR),
            McpError::NoEndpoint => (StatusCode::OK, INTERNAL_ERROR),
            McpError::SessionId(_) => (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR),
            McpError::NoStream(_) => (StatusCode::METHOD_NOT_ALLOWED, INVALID_REQUEST),
            McpError::InvalidParams(_) => (StatusCode::BAD_REQUEST, INVALID_PARAMS),
            McpError::HeaderMismatch(_) => (StatusCode::BAD_REQUEST, HEADER_MISMATCH),
            McpError::UnsupportedVersion { .. } => (StatusCode::BAD_REQUEST, UNSUPPORTED_VERSION),
            McpError::MethodNotFound { .. } => (StatusCode::NOT_FOUND, METHOD_NOT_FOUND),
            McpError::Forbidden(_) => (StatusCode::FORBIDDEN, FORBIDDEN),
            McpError::Refused { status, error, .. } => (
                *status,
                error
                    .as_ref()
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_i64)
                    .unwrap_or(UPSTREAM_ERROR),
            ),
            McpError::CircuitOpen => (StatusCode::SERVICE_UNAVAILABLE, UPSTREAM_ERROR),
            McpError::StreamConflict => (StatusCode::CONFLICT, INVALID_REQUEST),
            McpError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, INVALID_REQUEST),
            McpError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, INVALID_REQUEST),
            McpError::RateLimited { .. } | McpError::OverQuota { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, TOO_MANY_REQUESTS)
            }
        }
    }

    fn message(&self) -> String {
        match self {
            McpError::Parse(e) => format!("Parse error: {e}"),
            McpError::InvalidRequest(m) | McpError::NoStream(m) => (*m).to_owned(),
            McpError::UnknownServer(Some(name)) => format!("unknown server {name:?}"),
            McpError::UnknownServer(None) => "unknown server".to_owned(),
            McpError::StoreUnavailable => "configuration store unavailable".to_owned(),
            McpError::SessionNotFound => "Session not found".to_owned(),
            McpError::Exhausted(t) => format!(
                "no upstream session became free within {} ms (pool exhausted)",
                t.as_millis()
            ),
            McpError::PoolOverloaded(ms) => format!(
                "pool overloaded: the wait for an upstream session (about {ms} ms) would exceed what the pool can serve; retry later"
            ),
            McpError::Overloaded => {
                "this node is at its limit of concurrent requests; retry (any node serves any session)".to_owned()
            }
            McpError::BodyTimeout(t) => format!("request body not received within {}s", t.as_secs()),
            McpError::Coordination => "pool coordination unavailable, retry later".to_owned(),
            McpError::Upstream(e) => format!("upstream MCP server failed: {e}"),
            McpError::DuplicateId => "request id already in flight in this session".to_owned(),
            McpError::EndpointsChanged => "endpoint list changed; retry".to_owned(),
            McpError::BindingChanged => "binding changed; retry".to_owned(),
            McpError::NoEndpoint => "server has no endpoint".to_owned(),
            McpError::SessionId(e) => format!("session id: {e}"),
            McpError::InvalidParams(m) | McpError::HeaderMismatch(m) | McpError::Forbidden(m) => m.clone(),
            McpError::UnsupportedVersion { .. } => "Unsupported protocol version".to_owned(),
            McpError::MethodNotFound { message, .. } => message.clone(),
            McpError::Refused { summary, .. } => summary.clone(),
            McpError::StreamConflict => "a GET stream is already open for this session".to_owned(),
            McpError::TooLarge(limit) => format!("request body larger than {limit} bytes"),
            McpError::UnsupportedMediaType(got) => {
                format!("Content-Type must be application/json (got {got:?})")
            }
            McpError::CircuitOpen => {
                "every endpoint of this server is failing (circuit breaker open); retry later".to_owned()
            }
            McpError::RateLimited { rate, burst, .. } => format!(
                "rate limit exceeded: at most {rate} requests per second per user (burst {burst}; pool_rate_limit)"
            ),
            McpError::OverQuota { quota, limit } => format!(
                "{} quota reached: at most {limit} {} per user in this pool ({})",
                quota.as_str(),
                match quota {
                    QuotaKind::Sessions => "client sessions",
                    QuotaKind::Inflight => "requests in flight",
                },
                quota.setting()
            ),
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            McpError::UnsupportedVersion { supported, requested } => {
                Some(json!({"supported": supported, "requested": requested}))
            }
            McpError::MethodNotFound { method, .. } => Some(json!(method)),
            McpError::RateLimited { retry_after_ms, .. } => {
                Some(json!({"limit": "pool_rate_limit", "retryAfterMs": retry_after_ms}))
            }
            McpError::OverQuota { quota, limit } => Some(json!({"quota": quota.setting(), "limit": limit})),
            _ => None,
        }
    }

    /// The JSON-RPC error object (`{"code", "message"[, "data"]}`); an upstream's own error
    /// object passes unchanged.
    pub fn error_object(&self, in_band: bool) -> Value {
        if let McpError::Refused { error: Some(e), .. } = self {
            return e.clone();
        }
        let mut error = json!({"code": self.parts(in_band).1, "message": self.message()});
        if let Some(d) = self.data() {
            error["data"] = d;
        }
        error
    }

    /// The answer to the request `id`.
    pub fn answer(self, id: &Value) -> Response {
        self.respond(id, true)
    }

    /// The answer to a message that is not a request (a notification, a GET or DELETE).
    pub fn out_of_band(self) -> Response {
        self.respond(&Value::Null, false)
    }

    /// The answer to `id` when the message is a request, else out of band.
    pub fn answer_to(self, id: Option<&Value>) -> Response {
        match id {
            Some(id) => self.answer(id),
            None => self.out_of_band(),
        }
    }

    fn respond(self, id: &Value, in_band: bool) -> Response {
        let (status, _) = self.parts(in_band);
        let body = json!({"jsonrpc": "2.0", "id": id, "error": self.error_object(in_band)});
        let limits = self.limit_headers();
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        for (name, value) in limits {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }

    /// `Retry-After`, and for the rate limit the IETF `RateLimit-Policy` / `RateLimit` fields
    /// (draft-ietf-httpapi-ratelimit-headers: the policy admits `q` requests per window of `w`
    /// seconds, the time a full burst takes to refill; nothing `r` remains for `t` seconds).
    fn limit_headers(&self) -> Vec<(header::HeaderName, String)> {
        match self {
            McpError::RateLimited {
                retry_after_ms,
                rate,
                burst,
            } => {
                let retry = retry_after_ms.div_ceil(1000).max(1);
                let window = u64::from(*burst).div_ceil(u64::from((*rate).max(1))).max(1);
                vec![
                    (header::RETRY_AFTER, retry.to_string()),
                    (
                        header::HeaderName::from_static("ratelimit-policy"),
                        format!("\"user\";q={burst};w={window}"),
                    ),
                    (
                        header::HeaderName::from_static("ratelimit"),
                        format!("\"user\";r=0;t={retry}"),
                    ),
                ]
            }
            // A request in flight ends soon; a client session ends when its client closes it or
            // after the unused/idle TTL.
            McpError::OverQuota { quota, .. } => vec![(
                header::RETRY_AFTER,
                match quota {
                    QuotaKind::Inflight => "1",
                    QuotaKind::Sessions => "30",
                }
                .to_owned(),
            )],
            _ => Vec::new(),
        }
    }
}

impl From<ControlError> for McpError {
    fn from(e: ControlError) -> McpError {
        match e {
            ControlError::Exhausted(t) => McpError::Exhausted(t),
            ControlError::Overloaded { expected_ms } => McpError::PoolOverloaded(expected_ms),
            ControlError::BindingLost => McpError::SessionNotFound,
            ControlError::UnknownPool(_) => McpError::UnknownServer(None),
            ControlError::CircuitOpen => McpError::CircuitOpen,
            ControlError::RateLimited {
                retry_after_ms,
                rate,
                burst,
            } => McpError::RateLimited {
                retry_after_ms,
                rate,
                burst,
            },
            ControlError::OverQuota { quota, limit } => McpError::OverQuota { quota, limit },
            other => {
                tracing::warn!(error = %other, "control plane call failed");
                McpError::Coordination
            }
        }
    }
}

impl From<UpstreamError> for McpError {
    fn from(e: UpstreamError) -> McpError {
        match e {
            UpstreamError::InvalidInput(m) => McpError::InvalidParams(m),
            UpstreamError::Http { status, ref body } if (400..500).contains(&status) => {
                // A JSON-RPC error object in the body is the upstream's answer: relay it.
                let error = serde_json::from_str::<Value>(body).ok().and_then(|v| {
                    v.get("error")
                        .filter(|e| e.get("code").is_some_and(Value::is_i64))
                        .cloned()
                });
                McpError::Refused {
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                    error,
                    summary: e.to_string(),
                }
            }
            other => McpError::Upstream(other.to_string()),
        }
    }
}

impl From<SlotError> for McpError {
    fn from(e: SlotError) -> McpError {
        match e {
            SlotError::Control(e) => e.into(),
            SlotError::Upstream(e) => e.into(),
            SlotError::EndpointsChanged => McpError::EndpointsChanged,
            SlotError::BindingChanged => McpError::BindingChanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_upstream_is_in_band_for_requests_and_502_otherwise() {
        let e = || McpError::Upstream("down".into());
        assert_eq!(e().parts(true), (StatusCode::OK, code::UPSTREAM_ERROR));
        assert_eq!(e().parts(false), (StatusCode::BAD_GATEWAY, code::UPSTREAM_ERROR));
        assert_eq!(e().error_object(true)["message"], "upstream MCP server failed: down");
    }

    #[test]
    fn unavailable_answers_say_when_to_retry() {
        let r = McpError::Exhausted(Duration::from_secs(3)).answer(&json!(7));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let r = McpError::SessionNotFound.out_of_band();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn upstream_4xx_is_relayed_with_its_status_and_error_object() {
        let e: McpError = UpstreamError::Http {
            status: 404,
            body: r#"{"jsonrpc":"2.0","id":"pg:1","error":{"code":-32601,"message":"Method not found"}}"#.into(),
        }
        .into();
        let r = e.answer(&json!(7));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let e: McpError = UpstreamError::Http {
            status: 400,
            body: r#"{"error":{"code":-32602,"message":"bad"}}"#.into(),
        }
        .into();
        assert_eq!(e.parts(true), (StatusCode::BAD_REQUEST, -32602));
        assert_eq!(e.error_object(true), json!({"code": -32602, "message": "bad"}));
        // No JSON-RPC error in the body: the status is named, the body quoted briefly.
        let e: McpError = UpstreamError::Http {
            status: 403,
            body: "x".repeat(5000),
        }
        .into();
        assert_eq!(e.parts(true), (StatusCode::FORBIDDEN, code::UPSTREAM_ERROR));
        let msg = e.error_object(true)["message"].as_str().unwrap_or_default().to_owned();
        assert!(msg.starts_with("upstream answered HTTP 403: xxx"), "{msg}");
        assert!(msg.len() < 300, "error bodies are summarized: {} bytes", msg.len());
        // A 5xx stays the gateway's upstream failure.
        let e: McpError = UpstreamError::Http {
            status: 503,
            body: String::new(),
        }
        .into();
        assert_eq!(e.parts(true), (StatusCode::OK, code::UPSTREAM_ERROR));
    }

    #[test]
    fn refusals_carry_their_data() {
        let e = McpError::UnsupportedVersion {
            supported: vec!["2026-07-28"],
            requested: "1999-01-01".into(),
        };
        assert_eq!(e.parts(true), (StatusCode::BAD_REQUEST, code::UNSUPPORTED_VERSION));
        assert_eq!(
            e.error_object(true)["data"],
            json!({"supported": ["2026-07-28"], "requested": "1999-01-01"})
        );
    }
}
