//! The client-facing MCP endpoint: `POST/GET/DELETE /servers/{server_id}/mcp`, Streamable HTTP
//! for session-era clients (2025-03-26, 2025-06-18, 2025-11-25) and sessionless 2026-07-28 ones.
//!
//! This layer only translates: MCP messages in, calls to the pool client
//! ([`poolgate_control::slots::SlotClient`]: leases, upstream sessions) and the upstream client,
//! MCP messages out. Session-era clients get a gateway-issued, encrypted session id that names
//! their user, server, binding and upstream session ([`crate::session_id`]); every later
//! request is routed from that id alone — any node, no Redis read on the hot path — by its mode
//! ([`crate::session_id::SessionMode`]):
//! - **bound** (session isolation, the default): the client owns its upstream session; requests
//!   go straight to it; the binding's idle TTL is refreshed at most every few seconds per node;
//! - **shared** (shared isolation): each request leases a slot by strategy, with request ids and
//!   progress tokens rewritten to be unique on the shared upstream session (I9);
//! - **direct** (pooling disabled): a fresh upstream session per client session.
//!
//! # Layout
//! - `mod.rs`: routing of the three methods to the session, forwarding and 2026-07-28 paths.
//! - `session.rs`: `initialize`, DELETE, decoding a client's session id, binding touches.
//! - `forward.rs`: one client message to its upstream session (bound, direct or leased), id
//!   rewriting, cancellations, the in-flight id check.
//! - `stream.rs`: answers streamed event by event, and the GET stream.
//! - `modern.rs`: clients of the sessionless 2026-07-28 revision.
//! - `origin.rs`: `Origin` (and, on loopback binds, `Host`) validation against DNS rebinding.
//! - `error.rs`: [`McpError`], the one table of JSON-RPC codes and HTTP statuses.

mod error;
mod forward;
pub mod modern;
pub mod origin;
mod session;
mod stream;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::session_id::ClientSession;
use poolgate_shared::domain::server::{Server, ServerId};
use poolgate_upstream::SESSION_HEADER;

pub use error::{code, McpError};

use crate::http::auth::McpCaller;
use crate::state::AppState;

/// Largest MCP request body accepted.
pub const MAX_MCP_BODY: usize = 4 * 1024 * 1024;

/// The server named in the path.
async fn server_for(state: &AppState, raw: &str) -> Result<Arc<Server>, McpError> {
    let unknown = || McpError::UnknownServer(Some(raw.to_owned()));
    let server_id = ServerId::parse(raw).map_err(|_| unknown())?;
    match state.servers.get(&state.store, &server_id).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(unknown()),
        Err(e) => {
            tracing::warn!(error = %e, "server lookup failed");
            Err(McpError::StoreUnavailable)
        }
    }
}

fn session_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

pub async fn post(
    State(state): State<AppState>,
    McpCaller(caller): McpCaller,
    Path(raw_server): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE);
    if let Some(ct) = content_type.filter(|ct| !ct.to_str().is_ok_and(crate::http::json::is_json_type)) {
        let got = String::from_utf8_lossy(ct.as_bytes()).chars().take(100).collect();
        return McpError::UnsupportedMediaType(got).answer(&Value::Null);
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return McpError::TooLarge(MAX_MCP_BODY).answer(&Value::Null);
        }
        Err(e) => return McpError::Parse(e.body_text()).answer(&Value::Null),
    };
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return McpError::Parse(e.to_string()).answer(&Value::Null),
    };
    if !msg.is_object() {
        let what = if msg.is_array() {
            "batches are not supported"
        } else {
            "a JSON-RPC message must be an object"
        };
        return McpError::InvalidRequest(what).answer(&Value::Null);
    }
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let server = match server_for(&state, &raw_server).await {
        Ok(s) => s,
        Err(e) => return e.answer(&id),
    };
    if modern::is_modern(&headers, &msg) {
        return modern::handle(&state, &server, &caller.subject, &headers, msg).await;
    }
    let method = msg.get("method").and_then(Value::as_str).unwrap_or_default();
    if method == "initialize" {
        // Always a new client session (a client re-initializing after a 404 may still send its
        // old id); the upstream session behind it is the gateway's business.
        return session::initialize(&state, &server, &caller.subject, &msg)
            .await
            .unwrap_or_else(|e| e.answer(&id));
    }
    if method == "notifications/initialized" && msg.get("id").is_none() {
        // The gateway did the upstream handshake itself; this is the client's half, acknowledged
        // here (forwarding it would send a second `initialized` to a warm upstream session).
        return StatusCode::ACCEPTED.into_response();
    }
    if session_header(&headers).is_none() {
        return McpError::InvalidRequest("Bad Request: Mcp-Session-Id header is required").answer(&id);
    }
    let Some(session) = session::client_session(&state, &headers, &caller.subject, server.id.as_str()) else {
        return McpError::SessionNotFound.answer(&id);
    };
    forward::forward(&state, &server, &session, msg, body).await
}

/// The caller's own existing session of the server in the path, for GET and DELETE: 405 for
/// sessionless clients (they have no session), 404 for anything else.
pub struct ExistingSession {
    server: Arc<Server>,
    session: ClientSession,
}

impl FromRequestParts<AppState> for ExistingSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let McpCaller(caller) = McpCaller::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(raw_server) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if modern::is_modern(&parts.headers, &Value::Null) {
            return Err(modern::method_not_allowed());
        }
        let server = server_for(state, &raw_server).await.map_err(McpError::out_of_band)?;
        match session::client_session(state, &parts.headers, &caller.subject, server.id.as_str()) {
            Some(session) => Ok(ExistingSession { server, session }),
            None => Err(McpError::SessionNotFound.out_of_band()),
        }
    }
}

pub async fn get(State(state): State<AppState>, found: ExistingSession, headers: HeaderMap) -> Response {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    stream::relay_stream(&state, &found.server, &found.session, last)
        .await
        .unwrap_or_else(McpError::out_of_band)
}

pub async fn delete(State(state): State<AppState>, found: ExistingSession) -> Response {
    match session::end(&state, &found.server, &found.session).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.out_of_band(),
    }
}
