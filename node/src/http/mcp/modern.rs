//! Clients of the sessionless revision 2026-07-28: no `initialize`, no session id; every request
//! carries its version and capabilities in `_meta` plus `MCP-Protocol-Version`, `Mcp-Method` and
//! (for named requests) `Mcp-Name` headers.
//!
//! Requests are validated in the revision's order — `_meta` (-32602), routing headers (-32020),
//! version (-32022) — and refused with HTTP 400 before anything reaches an upstream. Then:
//! - `server/discover` is answered by the gateway: from the upstream's own discovery (a 2026
//!   upstream) or from a session-era upstream's cached `initialize` result, translated;
//! - every other request leases a slot for itself (`forward::forward_leased`). Behind a
//!   session-era upstream in session isolation the lease is bound to the user (`user:<sub>:<srv>`),
//!   so users never share an upstream session and one user's requests, from any node, see one
//!   consistent upstream session; in shared isolation (and for 2026 upstreams) any slot serves;
//! - results get the fields 2026 clients require (`resultType`, and `ttlMs`/`cacheScope` on
//!   cacheable results, kept when the upstream set them);
//! - notifications are relayed, never dropped: `notifications/cancelled` to the upstream request
//!   it names (under its rewritten id), any other one like a request (I10);
//! - `subscriptions/listen` is relayed to 2026 upstreams and refused for session-era ones;
//!   multi round-trip results (`input_required`) pass through unchanged.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use poolgate_control::slots::{binding_key, LeaseRequest, SERVER_INFO_META};
use poolgate_shared::domain::pool::{Isolation, Strategy};
use poolgate_shared::domain::server::Server;
use poolgate_upstream::{
    LATEST_SESSION_VERSION, META_CAPABILITIES, META_VERSION, METHOD_HEADER, NAME_HEADER, SESSION_VERSIONS,
    STATELESS_VERSION, VERSION_HEADER,
};

use super::forward::{forward_leased, LeasedCall};
use super::McpError;
use crate::state::AppState;

/// Versions this gateway serves to modern (sessionless) clients.
pub const MODERN_VERSIONS: [&str; 1] = [STATELESS_VERSION];
/// Methods whose results clients may cache (`ttlMs`, `cacheScope`).
const CACHEABLE: [&str; 5] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Whether a request is meant for the sessionless revision: its `_meta` carries the revision's
/// version key (then a session-era or missing header is a mismatch to report), or its version
/// header names a version that is not of the session era.
pub fn is_modern(headers: &HeaderMap, msg: &Value) -> bool {
    if msg.pointer("/params/_meta").and_then(|m| m.get(META_VERSION)).is_some() {
        return true;
    }
    let header = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    header.is_some_and(|v| !SESSION_VERSIONS.contains(&v) && v != "2024-11-05")
}

fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(format!("{name} header appears more than once"));
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

/// Checks `_meta`, the routing headers and the version, in the revision's order.
fn validate(headers: &HeaderMap, msg: &Value) -> Result<(), McpError> {
    let method = msg.get("method").and_then(Value::as_str).unwrap_or_default();
    let Some(meta) = msg.pointer("/params/_meta").and_then(Value::as_object) else {
        return Err(McpError::InvalidParams(format!(
            "params._meta must be an object carrying the required '{META_VERSION}' and '{META_CAPABILITIES}' envelope keys"
        )));
    };
    let missing: Vec<&str> = [META_VERSION, META_CAPABILITIES]
        .into_iter()
        .filter(|k| !meta.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(McpError::InvalidParams(format!(
            "params._meta is missing the required envelope key(s): {}",
            missing.join(", ")
        )));
    }
    let envelope = meta.get(META_VERSION).and_then(Value::as_str).unwrap_or_default();
    let header_err = McpError::HeaderMismatch;
    let mismatch = |m: &str| McpError::HeaderMismatch(m.to_owned());
    match single_header(headers, VERSION_HEADER).map_err(header_err)? {
        None => return Err(mismatch("mcp-protocol-version header is required")),
        Some(v) if v != envelope => {
            return Err(mismatch(
                "mcp-protocol-version header does not match the request envelope's protocol version",
            ))
        }
        Some(_) => {}
    }
    if single_header(headers, METHOD_HEADER).map_err(header_err)? != Some(method) {
        return Err(mismatch("mcp-method header does not match the request body's method"));
    }
    let name = match method {
        "tools/call" | "prompts/get" => Some(("name", msg.pointer("/params/name").and_then(Value::as_str))),
        "resources/read" => Some(("uri", msg.pointer("/params/uri").and_then(Value::as_str))),
        _ => None,
    };
    if let Some((field, expected)) = name {
        let got = single_header(headers, NAME_HEADER).map_err(header_err)?;
        if got.is_none() || got != expected {
            return Err(McpError::HeaderMismatch(format!(
                "mcp-name header does not match the request body's '{field}' parameter"
            )));
        }
    }
    if !MODERN_VERSIONS.contains(&envelope) {
        return Err(McpError::UnsupportedVersion {
            supported: MODERN_VERSIONS.to_vec(),
            requested: envelope.to_owned(),
        });
    }
    Ok(())
}

/// 405 for GET and DELETE from sessionless clients (no stream, no session).
pub fn method_not_allowed() -> Response {
    let mut resp = StatusCode::METHOD_NOT_ALLOWED.into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

/// The result fields 2026 clients require on an answer to `method`.
pub(crate) fn complete_result(method: &str, result: &mut Value) {
    let Some(obj) = result.as_object_mut() else { return };
    obj.entry("resultType").or_insert_with(|| json!("complete"));
    if CACHEABLE.contains(&method) {
        obj.entry("ttlMs").or_insert_with(|| json!(0));
        obj.entry("cacheScope").or_insert_with(|| json!("private"));
    }
}

/// The server's identity, from a discover or initialize result.
fn server_info(result: &Value) -> Value {
    result
        .pointer("/_meta")
        .and_then(|m| m.get(SERVER_INFO_META))
        .or_else(|| result.get("serverInfo"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `server/discover`, answered by the gateway.
async fn discover(state: &AppState, server: &Arc<Server>, subject: &str, id: &Value) -> Result<Response, McpError> {
    let upstream = match server.endpoints.first() {
        Some(e) => state.slots.discovered(server, &e.url).await,
        None => None,
    };
    let source = match upstream {
        Some(d) => d,
        // A session-era upstream: a warm session's cached initialize result.
        None => match state.slots.profiles().init(&server.id) {
            Some((_, r)) => r,
            None => {
                let key = lease_key(server, subject, false);
                let quota_user = state.quota_user(subject);
                let req = LeaseRequest {
                    key: key.as_deref(),
                    version: Some(LATEST_SESSION_VERSION),
                    pre_ping: false,
                    user: quota_user.as_deref(),
                };
                let lease = state.lease(server, req).await?;
                let meta = lease.slot().meta.clone();
                lease.release().await;
                state.slots.init_result(&server.id, &meta, true).1
            }
        },
    };
    let mut result = json!({
        "supportedVersions": MODERN_VERSIONS,
        "capabilities": source.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {SERVER_INFO_META: server_info(&source)},
    });
    if let Some(i) = source.get("instructions") {
        result["instructions"] = i.clone();
    }
    Ok((
        StatusCode::OK,
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})),
    )
        .into_response())
}

/// The key a modern client's lease is bound to: the user, behind a session-era upstream in
/// session isolation (or with pooling off); the user for sticky; none otherwise.
fn lease_key(server: &Server, subject: &str, sessionless_upstream: bool) -> Option<String> {
    let per_user_session = !sessionless_upstream && server.pool.pool_isolation == Isolation::Session;
    if per_user_session {
        Some(binding_key::user(subject, &server.id))
    } else if server.pool.pool_strategy == Strategy::Sticky {
        Some(binding_key::sticky(subject, &server.id))
    } else {
        None
    }
}

pub async fn handle(
    state: &AppState,
    server: &Arc<Server>,
    subject: &str,
    headers: &HeaderMap,
    msg: Value,
) -> Response {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    route(state, server, subject, headers, msg)
        .await
        .unwrap_or_else(|e| e.answer(&id))
}

async fn route(
    state: &AppState,
    server: &Arc<Server>,
    subject: &str,
    headers: &HeaderMap,
    msg: Value,
) -> Result<Response, McpError> {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    validate(headers, &msg)?;
    let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
    // Where this user's requests on this server are found (for cancellations); ids are
    // rewritten per lease, so two clients of one user can use the same ids at once.
    let scope = format!("modern|{}", binding_key::user(subject, &server.id));
    if method.is_empty() || method == "notifications/initialized" {
        // A stray response (this revision sends no server requests on a POST), or the session
        // era's handshake note, which means nothing here.
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    if msg.get("id").is_none() {
        // A notification: a cancellation reaches the upstream request it names (under its
        // rewritten id); any other goes upstream like a request would — to the user's own
        // upstream session behind a session-era upstream in session isolation.
        let sessionless = state.slots.sessionless(server).await;
        let call = LeasedCall {
            user: subject,
            scope: &scope,
            version: LATEST_SESSION_VERSION,
            msg,
            id: None,
            inflight: None,
            lease_key: lease_key(server, subject, sessionless),
            complete_for: None,
        };
        return forward_leased(state, server, call).await;
    }
    match method.as_str() {
        "server/discover" => return discover(state, server, subject, &id).await,
        "initialize" | "ping" | "notifications/initialized" | "logging/setLevel" => {
            return Err(McpError::MethodNotFound {
                method,
                message: "Method not found".to_owned(),
            })
        }
        _ => {}
    }
    let sessionless = state.slots.sessionless(server).await;
    if method == "subscriptions/listen" && !sessionless {
        return Err(McpError::MethodNotFound {
            method,
            message: "subscriptions/listen is not available: this server's upstream speaks the session era".to_owned(),
        });
    }
    let call = LeasedCall {
        user: subject,
        scope: &scope,
        version: LATEST_SESSION_VERSION,
        msg,
        id: Some(id),
        inflight: None,
        lease_key: lease_key(server, subject, sessionless),
        complete_for: Some(method),
    };
    forward_leased(state, server, call).await
}
