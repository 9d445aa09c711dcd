//! Forwarding one client message to its upstream session, and passing the answer back — as JSON,
//! or event by event when the upstream streams. Whatever happens, a client request gets the
//! upstream's answer or a JSON-RPC error (I10); guards tied to the response's life release
//! leases and in-flight ids even when the client goes away mid-stream.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use poolgate_shared::control::{Affinity, Lease, Outcome, SlotRecord};
use poolgate_shared::domain::pool::{Isolation, Strategy};
use poolgate_shared::domain::server::Server;
use poolgate_shared::session_id::ClientSession;
use poolgate_shared::upstream::sse::SseEvent;
use poolgate_shared::upstream::{
    EventStream, Reply, SessionTarget, UpstreamClient, UpstreamError, REQUEST_TIMEOUT, STATELESS_VERSION,
};

use super::{lease_slot, rpc, MODE_BOUND, MODE_SHARED};
use crate::state::AppState;

/// Refresh a binding's idle TTL at most this often per node (amortizes the control-plane call).
const MAX_TOUCH_INTERVAL: Duration = Duration::from_secs(30);

pub(crate) fn target(server: &Server, session: &ClientSession) -> SessionTarget {
    SessionTarget {
        url: session.url.clone(),
        session_id: session.sid.clone(),
        protocol_version: session.pv.clone(),
        headers: server.upstream_headers.pairs(),
    }
}

fn slot_target(server: &Server, slot: &SlotRecord) -> SessionTarget {
    SessionTarget::for_slot(slot, server.upstream_headers.pairs())
}

/// Ends the upstream sessions of slots that left the pool (best effort, in the background).
pub(crate) fn close_slots(state: &AppState, server: &Server, closed: Vec<SlotRecord>) {
    if closed.is_empty() {
        return;
    }
    let (client, server) = (state.upstream.clone(), server.clone());
    tokio::spawn(async move {
        poolgate_shared::housekeeping::cleanup::close_removed(&client, Some(&server), &closed).await;
    });
}

/// Removes an in-flight request id when the answer is done (or abandoned).
pub(crate) struct InFlight {
    state: AppState,
    session: String,
    id: String,
}

impl InFlight {
    /// Registers `id` for `session`; `None` if it is already in flight (I9).
    pub(crate) fn enter(state: &AppState, session: &str, id: &Value) -> Option<InFlight> {
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

/// Records where a shared-isolation request went, for cancellations, while it is in flight.
struct SharedCall {
    state: AppState,
    key: String,
}

impl Drop for SharedCall {
    fn drop(&mut self) {
        if let Ok(mut m) = self.state.shared_calls.lock() {
            m.remove(&self.key);
        }
    }
}

/// Releases a shared-isolation lease when the answer is done, and renews it while it streams.
struct LeaseGuard {
    state: AppState,
    server: Server,
    lease: String,
    started: Instant,
    error: bool,
    affinity: Affinity,
    /// Only streamed answers renew their lease; a JSON answer ends before the TTL matters.
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    fn new(state: &AppState, server: &Server, lease: &Lease, user: &str) -> LeaseGuard {
        let affinity = if server.pool.pool_isolation == Isolation::Shared && !user.is_empty() {
            state.note_affinity(&server.id, user, &lease.slot.id)
        } else {
            Affinity::None
        };
        LeaseGuard {
            state: state.clone(),
            server: server.clone(),
            lease: lease.id.clone(),
            started: Instant::now(),
            error: false,
            affinity,
            renewer: None,
        }
    }

    /// Renews the lease every half TTL for as long as the answer streams (until dropped).
    fn renew_while_streaming(mut self) -> LeaseGuard {
        let every =
            Duration::from_millis(u64::from(self.server.pool.pool_lease_ttl) * 500).max(Duration::from_millis(500));
        let (control, pool, id) = (self.state.control.clone(), self.server.id.clone(), self.lease.clone());
        self.renewer = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if !matches!(control.renew(&pool, &id).await, Ok(Some(_))) {
                    break;
                }
            }
        }));
        self
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(r) = &self.renewer {
            r.abort();
        }
        let outcome = Outcome {
            latency_ms: Some(self.started.elapsed().as_millis() as u64),
            error: self.error,
            // Under `none` the control plane retires the slot itself.
            retire: false,
            affinity: self.affinity,
        };
        let (state, server, lease) = (self.state.clone(), self.server.clone(), self.lease.clone());
        let releasing = state.releases.enter();
        tokio::spawn(async move {
            let _releasing = releasing;
            match state.control.release(&server.id, &lease, outcome).await {
                Ok(changed) => close_slots(&state, &server, changed.closed),
                Err(e) => {
                    tracing::warn!(server_id = %server.id, error = %e, "release failed; the lease expires by TTL")
                }
            }
        });
    }
}

/// Rewrites ids in events and notices the final answer.
struct Mapper {
    /// (upstream id, client id) of the forwarded request.
    request: Option<(Value, Value)>,
    /// (upstream token, client token) of its progress token.
    token: Option<(Value, Value)>,
    answered: bool,
    /// Shared isolation: server-to-client requests are refused (answered upstream with an error
    /// on this session) instead of reaching a client whose answer could land on another session.
    refuse_requests: Option<(UpstreamClient, SessionTarget)>,
    /// A 2026-07-28 client's request method: its answer gets the fields such clients require.
    complete_for: Option<String>,
}

impl Mapper {
    fn map(&mut self, mut msg: Value) -> Value {
        if let Some((up, orig)) = &self.request {
            if msg.get("method").is_none() && msg.get("id") == Some(up) {
                msg["id"] = orig.clone();
                self.answered = true;
                if let (Some(method), Some(result)) = (&self.complete_for, msg.get_mut("result")) {
                    super::modern::complete_result(method, result);
                }
            }
        }
        if let Some((up, orig)) = &self.token {
            if msg.pointer("/params/progressToken") == Some(up) {
                msg["params"]["progressToken"] = orig.clone();
            }
        }
        msg
    }

    /// The event to pass on, or `None` when it is consumed here.
    fn map_event(&mut self, mut e: SseEvent) -> Option<SseEvent> {
        if let Ok(msg) = serde_json::from_str::<Value>(&e.data) {
            if let (Some((client, target)), Some(method), Some(id)) = (
                &self.refuse_requests,
                msg.get("method").and_then(Value::as_str),
                msg.get("id"),
            ) {
                let refusal = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601,
                    "message": format!("{method} is not available through a shared-isolation pool")}});
                let (client, target) = (client.clone(), target.clone());
                tokio::spawn(async move {
                    let _ = client
                        .send(&target, refusal.to_string().into_bytes(), REQUEST_TIMEOUT)
                        .await;
                });
                return None;
            }
            let is_answer = msg.get("method").is_none() && msg.get("id").is_some();
            let mapped = self.map(msg);
            if is_answer && self.request.is_none() {
                self.answered = true;
            }
            e.data = mapped.to_string();
        }
        Some(e)
    }
}

/// An SSE response passing `events` through `mapper`; `guards` live as long as the stream. If the
/// upstream stream breaks before the request's answer, the client gets a JSON-RPC error event.
fn stream_response<G: Send + 'static>(
    events: EventStream,
    mapper: Mapper,
    client_id: Option<Value>,
    guards: G,
) -> Response {
    struct St<G> {
        events: EventStream,
        mapper: Mapper,
        client_id: Option<Value>,
        done: bool,
        _guards: G,
    }
    let st = St {
        events,
        mapper,
        client_id,
        done: false,
        _guards: guards,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let next = loop {
            match st.events.next().await {
                Some(Ok(e)) => match st.mapper.map_event(e) {
                    Some(e) => break Some(Ok(e)),
                    None => continue,
                },
                other => break other,
            }
        };
        match next {
            Some(Ok(e)) => Some((Ok::<_, Infallible>(Bytes::from(e.encode())), st)),
            end => {
                st.done = true;
                let failed = match end {
                    Some(Err(e)) => Some(e.to_string()),
                    _ => None,
                };
                match (&st.client_id, st.mapper.answered) {
                    (Some(id), false) => {
                        let why = failed.unwrap_or_else(|| "upstream ended the stream without an answer".to_owned());
                        let msg =
                            json!({"jsonrpc": "2.0", "id": id, "error": {"code": rpc::UPSTREAM_ERROR, "message": why}});
                        let e = SseEvent {
                            event: Some("message".into()),
                            data: msg.to_string(),
                            id: None,
                            retry: None,
                        };
                        Some((Ok(Bytes::from(e.encode())), st))
                    }
                    _ => None,
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/event-stream"));
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

fn failure(id: Option<&Value>, e: &UpstreamError) -> Response {
    match id {
        Some(id) => rpc::error(
            StatusCode::OK,
            id,
            rpc::UPSTREAM_ERROR,
            format!("upstream MCP server failed: {e}"),
        ),
        None => rpc::error(
            StatusCode::BAD_GATEWAY,
            &Value::Null,
            rpc::UPSTREAM_ERROR,
            format!("upstream MCP server failed: {e}"),
        ),
    }
}

/// Size at which the touch map drops stale entries.
const TOUCHED_PRUNE_AT: usize = 10_000;

/// Refreshes the binding's idle TTL when due; a binding that ended elsewhere ends this session.
async fn touch(state: &AppState, server: &Server, session: &ClientSession) -> Result<(), Response> {
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
            Err(rpc::session_not_found(&Value::Null))
        }
        Err(e) => {
            // Keep serving an existing session while the control plane is unreachable (SPEC §8).
            tracing::debug!(error = %e, "binding touch failed; serving from the session id");
            Ok(())
        }
    }
}

pub(crate) async fn forward(
    state: &AppState,
    server: &Server,
    session: &ClientSession,
    msg: Value,
    raw: Bytes,
) -> Response {
    let id = msg.get("id").cloned();
    let is_request = id.is_some() && msg.get("method").is_some();
    let inflight_key = format!("{}|{}", session.key, session.sid.as_deref().unwrap_or_default());
    let guard = match (&id, is_request) {
        (Some(id), true) => match InFlight::enter(state, &inflight_key, id) {
            Some(g) => Some(g),
            None => {
                return rpc::error(
                    StatusCode::OK,
                    id,
                    rpc::DUPLICATE_ID,
                    "request id already in flight in this session",
                )
            }
        },
        _ => None,
    };
    if session.mode == MODE_SHARED {
        let sticky_key =
            (server.pool.pool_strategy == Strategy::Sticky).then(|| format!("{}:{}", session.sub, server.id));
        return forward_leased(state, server, session, msg, id, is_request, guard, sticky_key, None).await;
    }
    if session.mode == MODE_BOUND {
        if let Err(resp) = touch(state, server, session).await {
            return resp;
        }
    }
    let target = target(server, session);
    let sent = if session.pv == STATELESS_VERSION {
        state.upstream.send_json(&target, &msg, REQUEST_TIMEOUT).await
    } else {
        state.upstream.send(&target, raw.to_vec(), REQUEST_TIMEOUT).await
    };
    match sent {
        Ok(Reply::Accepted) => StatusCode::ACCEPTED.into_response(),
        Ok(Reply::Json(v)) => (StatusCode::OK, axum::Json(v)).into_response(),
        Ok(Reply::Stream(events)) => {
            let mapper = Mapper {
                request: None,
                token: None,
                answered: !is_request,
                refuse_requests: None,
                complete_for: None,
            };
            stream_response(events, mapper, id.filter(|_| is_request), guard)
        }
        Err(UpstreamError::SessionLost) => {
            if session.mode == MODE_BOUND {
                if let Ok(changed) = state.control.unbind(&server.id, &session.key).await {
                    close_slots(state, server, changed.closed);
                }
            }
            rpc::session_not_found(id.as_ref().unwrap_or(&Value::Null))
        }
        Err(e) => failure(id.as_ref().filter(|_| is_request), &e),
    }
}

/// Leases a slot for this one message (shared isolation, sessionless upstreams, 2026-07-28
/// clients); `lease_key` binds the lease to a key's slot (sticky users; a 2026 client's user in
/// session isolation). Ids and progress tokens are rewritten so that concurrent clients on one
/// upstream session never see each other's answers (I9). A lost upstream session is retired and
/// the message replayed once on a fresh slot.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward_leased(
    state: &AppState,
    server: &Server,
    session: &ClientSession,
    msg: Value,
    id: Option<Value>,
    is_request: bool,
    inflight: Option<InFlight>,
    lease_key: Option<String>,
    complete_for: Option<String>,
) -> Response {
    // A cancellation goes to the upstream session carrying the request, under its rewritten id.
    if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
        let asked = msg.pointer("/params/requestId").cloned().unwrap_or(Value::Null);
        let call = state
            .shared_calls
            .lock()
            .ok()
            .and_then(|m| m.get(&format!("{}|{}", session.key, asked)).cloned());
        if let Some((target, upstream_id)) = call {
            let mut note = msg.clone();
            note["params"]["requestId"] = upstream_id;
            if let Err(e) = state.upstream.send_json(&target, &note, REQUEST_TIMEOUT).await {
                tracing::debug!(error = %e, "forwarding a cancellation failed");
            }
        }
        // Nothing in flight under that id on this node: the request already ended (or is on
        // another node, where its answer will still arrive).
        return StatusCode::ACCEPTED.into_response();
    }
    let null = Value::Null;
    for attempt in 0..2 {
        let lease = match lease_slot(
            state,
            server,
            lease_key.as_deref(),
            Some(&session.pv),
            id.as_ref().unwrap_or(&null),
        )
        .await
        {
            Ok(l) => l,
            Err(resp) => return resp,
        };
        let mut guard = LeaseGuard::new(state, server, &lease, &session.sub);
        let mut out = msg.clone();
        let target = slot_target(server, &lease.slot);
        let mut mapper = Mapper {
            request: None,
            token: None,
            answered: !is_request,
            refuse_requests: Some((state.upstream.clone(), target.clone())),
            complete_for: complete_for.clone(),
        };
        if let (true, Some(orig)) = (is_request, &id) {
            let up = Value::String(format!("pg:{}", lease.id));
            out["id"] = up.clone();
            mapper.request = Some((up, orig.clone()));
            if let Some(tok) = msg.pointer("/params/_meta/progressToken").cloned() {
                let up_tok = Value::String(format!("pg:{}:{}", lease.id, tok));
                out["params"]["_meta"]["progressToken"] = up_tok.clone();
                mapper.token = Some((up_tok, tok));
            }
        }
        let call = match (is_request, &id) {
            (true, Some(orig)) => {
                let key = format!("{}|{}", session.key, orig);
                if let Ok(mut m) = state.shared_calls.lock() {
                    m.insert(key.clone(), (target.clone(), out["id"].clone()));
                }
                Some(SharedCall {
                    state: state.clone(),
                    key,
                })
            }
            _ => None,
        };
        match state.upstream.send_json(&target, &out, REQUEST_TIMEOUT).await {
            Ok(Reply::Accepted) => return StatusCode::ACCEPTED.into_response(),
            Ok(Reply::Json(v)) => {
                guard.error = v.get("error").is_some();
                return (StatusCode::OK, axum::Json(mapper.map(v))).into_response();
            }
            Ok(Reply::Stream(events)) => {
                return stream_response(
                    events,
                    mapper,
                    id.filter(|_| is_request),
                    (guard.renew_while_streaming(), inflight, call),
                )
            }
            Err(UpstreamError::SessionLost) => {
                // Retire the dead slot (on guard drop) and replay once on another.
                guard.error = true;
                drop(guard);
                let _ = state
                    .control
                    .release(
                        &server.id,
                        &lease.id,
                        Outcome {
                            error: true,
                            retire: true,
                            latency_ms: None,
                            affinity: Affinity::None,
                        },
                    )
                    .await;
                if attempt == 0 {
                    continue;
                }
                return failure(id.as_ref().filter(|_| is_request), &UpstreamError::SessionLost);
            }
            Err(e) => {
                guard.error = true;
                if let Ok(changed) = state
                    .control
                    .mark(
                        &server.id,
                        &lease.slot.id,
                        poolgate_shared::control::SlotState::Unhealthy,
                    )
                    .await
                {
                    close_slots(state, server, changed.closed);
                }
                return failure(id.as_ref().filter(|_| is_request), &e);
            }
        }
    }
    failure(id.as_ref().filter(|_| is_request), &UpstreamError::SessionLost)
}

/// `GET`: in session isolation (and without pooling) the upstream session's own event stream is
/// relayed, resuming after `Last-Event-ID` when the client sends one; shared isolation has no
/// upstream session of the client's own, so there is no stream (405).
pub(crate) async fn relay_stream(
    state: &AppState,
    server: &Server,
    session: &ClientSession,
    last_event_id: Option<&str>,
) -> Response {
    if session.mode == MODE_SHARED || session.sid.is_none() {
        return rpc::error(
            StatusCode::METHOD_NOT_ALLOWED,
            &Value::Null,
            rpc::INVALID_REQUEST,
            "no server-initiated stream for this session; answers stream on each POST",
        );
    }
    if session.mode == MODE_BOUND {
        if let Err(resp) = touch(state, server, session).await {
            return resp;
        }
    }
    match state
        .upstream
        .open_stream(&target(server, session), last_event_id)
        .await
    {
        Ok(Some(events)) => {
            let mapper = Mapper {
                request: None,
                token: None,
                answered: true,
                refuse_requests: None,
                complete_for: None,
            };
            stream_response(events, mapper, None, ())
        }
        Ok(None) => rpc::error(
            StatusCode::METHOD_NOT_ALLOWED,
            &Value::Null,
            rpc::INVALID_REQUEST,
            "the upstream offers no server-initiated stream",
        ),
        Err(UpstreamError::SessionLost) => rpc::session_not_found(&Value::Null),
        Err(e) => failure(None, &e),
    }
}

/// A 2026-07-28 client's request: leased per request (bound to `lease_key` when given), with the
/// answer completed for such clients.
pub(crate) async fn forward_modern(
    state: &AppState,
    server: &Server,
    session: &ClientSession,
    msg: Value,
    id: Value,
    lease_key: Option<String>,
    method: String,
) -> Response {
    forward_leased(
        state,
        server,
        session,
        msg,
        Some(id),
        true,
        None,
        lease_key,
        Some(method),
    )
    .await
}
