//! JSON-RPC answers the gateway gives itself (errors, its own initialize result).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// JSON-RPC error codes used by the gateway.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INTERNAL_ERROR: i64 = -32603;
/// Server-defined: the session is unknown (the SDKs re-initialize on HTTP 404).
pub const SESSION_NOT_FOUND: i64 = -32001;
/// Server-defined: no upstream session became free within `pool_timeout`.
pub const POOL_EXHAUSTED: i64 = -32002;
/// Server-defined: the upstream could not be reached or failed.
pub const UPSTREAM_ERROR: i64 = -32003;
/// Server-defined: the client re-used a request id that is still in flight.
pub const DUPLICATE_ID: i64 = -32004;

/// A JSON-RPC error answer with an HTTP status.
pub fn error(status: StatusCode, id: &Value, code: i64, message: impl Into<String>) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}});
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// 404 for an unknown, expired, tampered or foreign session id.
pub fn session_not_found(id: &Value) -> Response {
    error(StatusCode::NOT_FOUND, id, SESSION_NOT_FOUND, "Session not found")
}
