//! Forwarding one client message to its upstream session and passing the answer back — as JSON,
//! or event by event when the upstream streams ([`super::stream`]). A bound or direct session
//! goes straight to its own upstream session; a shared one leases a slot per message through the
//! pool client. Either way a request's id (and progress token) is rewritten to one unique
//! fleet-wide before it goes upstream, and restored on the way back (I9): one client session can
//! be served by several nodes at once, and two of them must never put the same id on its upstream
//! session. A cancellation follows the request it names to its rewritten id. Whatever happens, a client request
//! gets the upstream's answer or a JSON-RPC error (I10); guards tied to the response's life
//! release leases and in-flight ids even when the client goes away mid-stream.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::session_id::{ClientSession, SessionMode};
use poolgate_control::slots::{binding_key, LeaseRequest};
use poolgate_shared::domain::pool::{Isolation, Strategy};
use poolgate_shared::domain::server::Server;
use poolgate_upstream::{Reply, UpstreamError, STATELESS_VERSION};

use super::stream::{stream_response, Mapper};
use super::{session, McpError};
use crate::state::AppState;

/// Removes an in-flight request id when the answer is done (or abandoned).
pub(super) struct InFlight {
    state: AppState,
    session: String,
    id: String,
}

impl InFlight {
    /// Registers `id` for `session`; `None` if it is already in flight (I9).
    fn enter(state: &AppState, session: &str, id: &Value) -> Option<InFlight> {
        let id = id.to_string();
        let mut map = state.inflight.lock().ok()?;
        if !map.entry(session.to_owned()).or_default().insert(id.clone()) {
            return None;
        }
        Some(InFlight {
            state: state.clone(),
            session: session.to_owned(),
            id,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut map) = self.state.inflight.lock() {
            if let Some(set) = map.get_mut(&self.session) {
                set.remove(&self.id);
                if set.is_empty() {
                    map.remove(&self.session);
                }
            }
        }
    }
}

/// Records where a request went (and under which rewritten id), for cancellations, while it is
/// in flight.
struct SharedCall {
    state: AppState,
    key: String,
    /// The rewritten id: the entry is removed only while it is still this call's (two clients
    /// of one 2026-07-28 user may use the same id at once).
    up: Value,
}

impl Drop for SharedCall {
    fn drop(&mut self) {
        if let Ok(mut m) = self.state.shared_calls.lock() {
            if m.get(&self.key).is_some_and(|(_, up)| *up == self.up) {
                m.remove(&self.key);
            }
        }
    }
}

/// One message to send on a leased slot.
pub(super) struct LeasedCall<'a> {
    /// The authenticated subject (for affinity reports).
    pub user: &'a str,
    /// The client's scope: its session key (session-era) or user key (2026-07-28) — where its
    /// in-flight requests are found for cancellations.
    pub scope: &'a str,
    /// The protocol version a slot created for this message is opened with.
    pub version: &'a str,
    pub msg: Value,
    /// The client's id, when the message is a request.
    pub id: Option<Value>,
    pub inflight: Option<InFlight>,
    /// Binds the lease to a key's slot (sticky users; a 2026 client's user in session isolation).
    pub lease_key: Option<String>,
    /// A 2026-07-28 client's method: its answer gets the fields such clients require.
    pub complete_for: Option<String>,
}

/// A session-era client's message within its session.
pub(super) async fn forward(
    state: &AppState,
    server: &Arc<Server>,
    session: &ClientSession,
    msg: Value,
    raw: Bytes,
) -> Response {
    let is_request = msg.get("method").is_some();
    let id = msg.get("id").cloned().filter(|_| is_request);
    let inflight = match &id {
        Some(id) => {
            let key = format!("{}|{}", session.key, session.sid.as_deref().unwrap_or_default());
            match InFlight::enter(state, &key, id) {
                Some(g) => Some(g),
                None => return McpError::DuplicateId.answer(id),
            }
        }
        None => None,
    };
    let answered = match session.mode {
        // A disabled pool takes no new leases: the client re-initializes and goes direct.
        SessionMode::Shared if !server.pool.pool_enabled => Err(McpError::SessionNotFound),
        SessionMode::Shared => {
            let sticky = server.pool.pool_strategy == Strategy::Sticky;
            let call = LeasedCall {
                user: &session.sub,
                scope: &session.key,
                version: &session.pv,
                msg,
                id: id.clone(),
                inflight,
                lease_key: sticky.then(|| binding_key::sticky(&session.sub, &server.id)),
                complete_for: None,
            };
            forward_leased(state, server, call).await
        }
        SessionMode::Bound | SessionMode::Direct => {
            forward_owned(state, server, session, &msg, raw, id.clone(), inflight).await
        }
    };
    answered.unwrap_or_else(|e| e.answer_to(id.as_ref()))
}

/// Rewrites a request's id (and progress token) to ones unique fleet-wide, registers where a
/// cancellation of it must go, and returns the mapper that restores them in the answer.
fn rewrite_request(
    state: &AppState,
    scope: &str,
    target: &poolgate_upstream::SessionTarget,
    msg: &mut Value,
    orig: &Value,
) -> (Mapper, SharedCall) {
    let up = Value::String(format!("pg:{}", uuid::Uuid::new_v4().simple()));
    let mut mapper = Mapper {
        answered: false,
        request: Some((up.clone(), orig.clone())),
        ..Mapper::default()
    };
    if let Some(tok) = msg.pointer("/params/_meta/progressToken").cloned() {
        let up_tok = Value::String(format!("{}:{tok}", up.as_str().unwrap_or_default()));
        msg["params"]["_meta"]["progressToken"] = up_tok.clone();
        mapper.token = Some((up_tok, tok));
    }
    msg["id"] = up.clone();
    let key = format!("{scope}|{orig}");
    if let Ok(mut m) = state.shared_calls.lock() {
        m.insert(key.clone(), (target.clone(), up.clone()));
    }
    let call = SharedCall {
        state: state.clone(),
        key,
        up,
    };
    (mapper, call)
}

/// A message on the session's own upstream session (bound or direct). Requests go with their id
/// rewritten (I9 across nodes); anything else (notifications, the client's answers to server
/// requests) goes as the client sent it.
async fn forward_owned(
    state: &AppState,
    server: &Arc<Server>,
    session: &ClientSession,
    msg: &Value,
    raw: Bytes,
    id: Option<Value>,
    inflight: Option<InFlight>,
) -> Result<Response, McpError> {
    if session.mode == SessionMode::Bound {
        session::touch(state, server, session).await?;
    }
    let target = match session::current_target(server, session) {
        Ok(t) => t,
        Err(e) => {
            if session.mode == SessionMode::Bound {
                if let Err(e) = state.slots.unbind(server, &session.key).await {
                    tracing::debug!(error = %e, "ending the binding of a moved endpoint's session failed");
                }
            }
            return Err(e);
        }
    };
    if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
        forward_cancellation(state, &session.key, msg).await;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let timeout = state.upstream.request_timeout();
    let (mapper, call, sent) = match &id {
        Some(orig) => {
            let mut out = msg.clone();
            let (mapper, call) = rewrite_request(state, &session.key, &target, &mut out, orig);
            let sent = if session.pv == STATELESS_VERSION {
                state.upstream.send_json(&target, &out, timeout).await
            } else {
                let body = serde_json::to_vec(&out).map_err(|e| McpError::Parse(e.to_string()))?;
                state.upstream.send(&target, body, timeout).await
            };
            (mapper, Some(call), sent)
        }
        None => {
            let sent = if session.pv == STATELESS_VERSION {
                state.upstream.send_json(&target, msg, timeout).await
            } else {
                state.upstream.send(&target, raw.to_vec(), timeout).await
            };
            (Mapper::passthrough(true), None, sent)
        }
    };
    let mut mapper = mapper;
    match sent {
        Ok(Reply::Accepted) => Ok(StatusCode::ACCEPTED.into_response()),
        Ok(Reply::Json(v)) => Ok((StatusCode::OK, axum::Json(mapper.map(v))).into_response()),
        Ok(Reply::Stream(events)) => Ok(stream_response(events, mapper, id, (inflight, call))),
        Err(UpstreamError::SessionLost) => {
            if session.mode == SessionMode::Bound {
                if let Err(e) = state.slots.unbind(server, &session.key).await {
                    tracing::debug!(error = %e, "ending the binding of a lost upstream session failed");
                }
            }
            Err(McpError::SessionNotFound)
        }
        Err(e) => Err(e.into()),
    }
}

/// Leases a slot for this one message (shared isolation, sessionless upstreams, 2026-07-28
/// clients). Ids and progress tokens are rewritten so that concurrent clients on one upstream
/// session never see each other's answers (I9). A lost upstream session is retired — in the
/// lease's one release, before anything else can pick it — and the message replayed once on
/// another slot. Only the upstream's own failures count against the slot: a JSON-RPC error or a
/// 4xx answer is the client's business and leaves the slot as healthy as it was.
pub(super) async fn forward_leased(
    state: &AppState,
    server: &Arc<Server>,
    call: LeasedCall<'_>,
) -> Result<Response, McpError> {
    let LeasedCall {
        user,
        scope,
        version,
        msg,
        id,
        inflight,
        lease_key,
        complete_for,
    } = call;
    if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
        forward_cancellation(state, scope, &msg).await;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let quota_user = state.quota_user(user);
    let request = LeaseRequest {
        key: lease_key.as_deref(),
        version: Some(version),
        pre_ping: false,
        user: quota_user.as_deref(),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut lease = state.lease(server, request).await?;
        lease.measure();
        if server.pool.pool_isolation == Isolation::Shared && !user.is_empty() {
            lease.set_affinity(state.note_affinity(&server.id, user, &lease.slot().id));
        }
        let target = lease.target();
        let mut mapper = Mapper {
            answered: id.is_none(),
            refuse_requests: Some((state.upstream.clone(), target.clone())),
            complete_for: complete_for.clone(),
            ..Mapper::default()
        };
        let mut out = msg.clone();
        let mut shared_call = None;
        if let Some(orig) = &id {
            let (rewritten, call) = rewrite_request(state, scope, &target, &mut out, orig);
            mapper.request = rewritten.request;
            mapper.token = rewritten.token;
            shared_call = Some(call);
        }
        match state
            .upstream
            .send_json(&target, &out, state.upstream.request_timeout())
            .await
        {
            Ok(Reply::Accepted) => return Ok(StatusCode::ACCEPTED.into_response()),
            Ok(Reply::Json(v)) => {
                return Ok((StatusCode::OK, axum::Json(mapper.map(v))).into_response());
            }
            Ok(Reply::Stream(events)) => {
                lease.renew_while_streaming();
                return Ok(stream_response(events, mapper, id, (lease, inflight, shared_call)));
            }
            Err(UpstreamError::SessionLost) => {
                lease.retire().await;
                if attempt < 2 {
                    continue;
                }
                return Err(UpstreamError::SessionLost.into());
            }
            Err(e) if e.counts_against_endpoint() => {
                lease.retire_unhealthy().await;
                return Err(e.into());
            }
            // Not reused, but the endpoint is not at fault (see `counts_against_endpoint`).
            Err(e) if e.counts_against_upstream() => {
                lease.retire().await;
                return Err(e.into());
            }
            Err(e) => {
                lease.release().await;
                return Err(e.into());
            }
        }
    }
}

/// A cancellation goes to the upstream session carrying the request, under its rewritten id.
async fn forward_cancellation(state: &AppState, scope: &str, msg: &Value) {
    // Only a string or number names a request (JSON-RPC ids; MCP forbids null ones): anything
    // else names nothing, so it can never match a request sent with `id: null`.
    let Some(asked) = msg
        .pointer("/params/requestId")
        .filter(|v| v.is_string() || v.is_number())
    else {
        return;
    };
    let call = state
        .shared_calls
        .lock()
        .ok()
        .and_then(|m| m.get(&format!("{scope}|{asked}")).cloned());
    // Nothing in flight under that id on this node: the request already ended (or is on another
    // node, where its answer will still arrive).
    let Some((target, upstream_id)) = call else { return };
    let mut note = msg.clone();
    let Some(params) = note.get_mut("params").and_then(Value::as_object_mut) else {
        return;
    };
    params.insert("requestId".into(), upstream_id);
    if let Err(e) = state
        .upstream
        .send_json(&target, &note, state.upstream.request_timeout())
        .await
    {
        tracing::debug!(error = %e, "forwarding a cancellation failed");
    }
}
