//! Session-era client sessions: `initialize` (answered from a warm upstream session's cached
//! result, or one created for the client), the encrypted client session id, DELETE, and the
//! binding's idle TTL refreshed as the client uses it.

use std::time::{Duration, Instant};

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::session_id::{ClientSession, SessionMode};
use poolgate_control::slots::{binding_key, LeaseRequest};
use poolgate_control::SlotMeta;
use poolgate_shared::domain::pool::Isolation;
use poolgate_shared::domain::server::Server;
use poolgate_upstream::{SessionTarget, SESSION_HEADER, SESSION_VERSIONS};

use super::{session_header, McpError};
use crate::state::AppState;

/// Refresh a binding's idle TTL at most this often per node (amortizes the control-plane call).
const MAX_TOUCH_INTERVAL: Duration = Duration::from_secs(30);
/// Size at which the touch map drops stale entries.
const TOUCHED_PRUNE_AT: usize = 10_000;

/// The client's session, if the id is ours, for this user and this server (I12), and not older
/// than `SESSION_MAX_AGE`.
pub(super) fn client_session(
    state: &AppState,
    headers: &HeaderMap,
    subject: &str,
    server: &str,
) -> Option<ClientSession> {
    let s = state.sessions.decode(session_header(headers)?)?;
    let max_age = i64::try_from(state.config.auth.session_max_age.as_secs()).unwrap_or(i64::MAX);
    let fresh = s.iat.saturating_add(max_age) >= poolgate_shared::auth::now_unix();
    (fresh && s.sub == subject && s.srv == server).then_some(s)
}

/// Where a session's requests go upstream.
/// The session's upstream session — only while its URL is still one of the server's endpoints:
/// a session id never routes to a URL the server no longer has (an endpoint moved or removed;
/// the client gets 404 and its SDK re-initializes on a current endpoint).
pub(super) fn current_target(server: &Server, session: &ClientSession) -> Result<SessionTarget, McpError> {
    if !server.endpoints.iter().any(|e| e.url == session.url) {
        return Err(McpError::SessionNotFound);
    }
    Ok(target(server, session))
}

pub(super) fn target(server: &Server, session: &ClientSession) -> SessionTarget {
    SessionTarget {
        url: session.url.clone(),
        session_id: session.sid.clone(),
        protocol_version: session.pv.clone(),
        headers: server.upstream_headers.pairs(),
    }
}

/// The version to speak with the client: what it asked for if poolgate and the upstream session
/// both speak it (the older of the two when they differ), else the upstream session's version.
fn client_version(requested: Option<&str>, upstream: &str) -> String {
    match requested {
        Some(v) if SESSION_VERSIONS.contains(&v) => std::cmp::min(v, upstream).to_owned(),
        _ => upstream.to_owned(),
    }
}

/// `initialize`: a new client session, bound to a warm upstream session in session isolation.
pub(super) async fn initialize(
    state: &AppState,
    server: &Arc<Server>,
    subject: &str,
    msg: &Value,
) -> Result<Response, McpError> {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let requested = msg.pointer("/params/protocolVersion").and_then(Value::as_str);
    let pooled = state.config.pooling.enabled && server.pool.pool_enabled;
    let (mode, key, meta, pv, result) = if !pooled {
        let endpoint = server.endpoints.first().ok_or(McpError::NoEndpoint)?;
        let meta = state.slots.open_session(server, &endpoint.url, requested).await?;
        let (pv, result) = state.slots.init_result(&server.id, &meta, false);
        // A key of its own: the scope of its in-flight request ids (never shared with others).
        let key = binding_key::session(subject, &server.id);
        (SessionMode::Direct, key, meta, pv, result)
    } else {
        // A sessionless upstream has no session state to isolate: its slots are concurrency
        // slots leased per request, whatever the isolation setting.
        let bound = server.pool.pool_isolation == Isolation::Session && !state.slots.sessionless(server).await;
        // Every client session gets a unique key: its binding in session isolation, and the
        // scope of its in-flight request ids in both isolations.
        let key = binding_key::session(subject, &server.id);
        let cached = if bound {
            None
        } else {
            state.slots.profiles().init(&server.id)
        };
        let (meta, pv, result) = match cached {
            Some((pv, result)) => (SlotMeta::default(), pv, result),
            None => {
                let quota_user = state.quota_user(subject);
                let req = LeaseRequest {
                    key: bound.then_some(key.as_str()),
                    version: requested,
                    pre_ping: true,
                    user: quota_user.as_deref(),
                };
                let lease = state.lease(server, req).await?;
                let meta = lease.slot().meta.clone();
                lease.release().await;
                let (pv, result) = state.slots.init_result(&server.id, &meta, !bound);
                (meta, pv, result)
            }
        };
        let mode = if bound { SessionMode::Bound } else { SessionMode::Shared };
        (mode, key, meta, pv, result)
    };
    let session = ClientSession {
        sub: subject.to_owned(),
        srv: server.id.to_string(),
        key,
        url: meta.endpoint.clone().unwrap_or_default(),
        // Shared sessions have no upstream session of their own.
        sid: if mode == SessionMode::Shared {
            None
        } else {
            meta.session_id
        },
        cv: client_version(requested, &pv),
        pv,
        mode,
        iat: poolgate_shared::auth::now_unix(),
    };
    let mut result = result;
    if let Some(obj) = result.as_object_mut() {
        obj.insert("protocolVersion".into(), Value::String(session.cv.clone()));
    }
    let encoded = state.sessions.encode(&session).map_err(McpError::SessionId)?;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        resp.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(resp)
}

/// DELETE: ends the binding (its upstream session is closed) or the direct upstream session.
pub(super) async fn end(state: &AppState, server: &Server, session: &ClientSession) -> Result<(), McpError> {
    // This node's touch bookkeeping for the session ends with it (sessions that just go idle are
    // dropped when the map is pruned, see `touch`).
    if let Ok(mut m) = state.touched.lock() {
        m.remove(&session.key);
    }
    match session.mode {
        SessionMode::Bound => match state.slots.unbind(server, &session.key).await? {
            true => Ok(()),
            false => Err(McpError::SessionNotFound),
        },
        SessionMode::Direct => {
            if let Err(e) = state.upstream.close(&target(server, session)).await {
                tracing::warn!(server_id = %server.id, error = %e, "closing the upstream session failed");
            }
            Ok(())
        }
        SessionMode::Shared => Ok(()),
    }
}

/// Refreshes the binding's idle TTL when due; a binding that ended elsewhere ends this session.
pub(super) async fn touch(state: &AppState, server: &Server, session: &ClientSession) -> Result<(), McpError> {
    let every = Duration::from_millis(u64::from(server.pool.pool_idle_ttl) * 250).min(MAX_TOUCH_INTERVAL);
    let due = state
        .touched
        .lock()
        .map(|m| m.get(&session.key).is_none_or(|at| at.elapsed() >= every))
        .unwrap_or(true);
    if !due {
        return Ok(());
    }
    match state.control.touch(&server.id, &session.key).await {
        Ok(true) => {
            if let Ok(mut m) = state.touched.lock() {
                // Sessions that went idle without a DELETE: forget entries older than the
                // touch interval's upper bound (their next request simply touches again).
                if m.len() >= TOUCHED_PRUNE_AT {
                    m.retain(|_, at| at.elapsed() < MAX_TOUCH_INTERVAL);
                }
                m.insert(session.key.clone(), Instant::now());
            }
            Ok(())
        }
        Ok(false) => {
            // Ended by a DELETE on another node, idle expiry or recycling: the upstream session is
            // closed (or about to be); the client must start over.
            if let Ok(mut m) = state.touched.lock() {
                m.remove(&session.key);
            }
            Err(McpError::SessionNotFound)
        }
        Err(e) => {
            // Keep serving an existing session while the control plane is unreachable (SPEC §8).
            tracing::debug!(error = %e, "binding touch failed; serving from the session id");
            Ok(())
        }
    }
}
