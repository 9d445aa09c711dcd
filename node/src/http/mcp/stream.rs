//! Answers that stream: upstream events passed to the client as they arrive, with ids and
//! progress tokens mapped back, and the GET stream of a session's server-initiated messages.
//! Whatever happens, a client request gets the upstream's answer or a JSON-RPC error event (I10).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::session_id::{ClientSession, SessionMode};
use poolgate_control::slots::LeaseGuard;
use poolgate_shared::domain::server::Server;
use poolgate_upstream::sse::SseEvent;
use poolgate_upstream::{EventStream, SessionTarget, UpstreamClient, UpstreamError};

use super::{code, session, McpError};
use crate::state::AppState;

/// Rewrites ids in answers and events, and notices the request's final answer.
#[derive(Default)]
pub(super) struct Mapper {
    /// (upstream id, client id) of the forwarded request.
    pub request: Option<(Value, Value)>,
    /// (upstream token, client token) of its progress token.
    pub token: Option<(Value, Value)>,
    pub answered: bool,
    /// Shared isolation: server-to-client requests are refused (answered upstream with an error
    /// on this session) instead of reaching a client whose answer could land on another session.
    pub refuse_requests: Option<(UpstreamClient, SessionTarget)>,
    /// A 2026-07-28 client's request method: its answer gets the fields such clients require.
    pub complete_for: Option<String>,
}

impl Mapper {
    /// A mapper that passes everything through; `answered` when no answer is awaited.
    pub fn passthrough(answered: bool) -> Mapper {
        Mapper {
            answered,
            ..Mapper::default()
        }
    }

    pub fn map(&mut self, mut msg: Value) -> Value {
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
                let refusal = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code::METHOD_NOT_FOUND,
                    "message": format!("{method} is not available through a shared-isolation pool")}});
                let (client, target) = (client.clone(), target.clone());
                tokio::spawn(async move {
                    let timeout = client.request_timeout();
                    let _ = client.send(&target, refusal.to_string().into_bytes(), timeout).await;
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

/// What lives as long as a streamed answer, told when the upstream stream fails (an event over
/// a limit, a broken connection) so a leased slot is retired rather than reused.
pub(super) trait StreamGuards: Send + 'static {
    fn stream_failed(&mut self) {}
}

impl StreamGuards for () {}

impl<T: Send + 'static> StreamGuards for Option<T> {}

impl<A: Send + 'static, B: Send + 'static> StreamGuards for (Option<A>, Option<B>) {}

impl<A: Send + 'static, B: Send + 'static> StreamGuards for (LeaseGuard, Option<A>, Option<B>) {
    fn stream_failed(&mut self) {
        self.0.retire_on_drop();
    }
}

/// An SSE response passing `events` through `mapper`; `guards` live as long as the stream. If the
/// upstream stream breaks before the request's answer, the client gets a JSON-RPC error event.
pub(super) fn stream_response<G: StreamGuards>(
    events: EventStream,
    mapper: Mapper,
    client_id: Option<Value>,
    guards: G,
) -> Response {
    events_until(events, mapper, client_id, guards, None)
}

/// [`stream_response`] that also ends (cleanly, as a resumable stream ends) when `stop` turns
/// true: the node is stopping, and the client resumes on another node with `Last-Event-ID`.
fn events_until<G: StreamGuards>(
    events: EventStream,
    mapper: Mapper,
    client_id: Option<Value>,
    guards: G,
    stop: Option<watch::Receiver<bool>>,
) -> Response {
    struct St<G> {
        events: EventStream,
        mapper: Mapper,
        client_id: Option<Value>,
        done: bool,
        stop: Option<watch::Receiver<bool>>,
        _guards: G,
    }
    let st = St {
        events,
        mapper,
        client_id,
        done: false,
        stop,
        _guards: guards,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let St {
            events, mapper, stop, ..
        } = &mut st;
        let mapped = async {
            loop {
                match events.next().await {
                    Some(Ok(e)) => match mapper.map_event(e) {
                        Some(e) => break Some(Ok(e)),
                        None => continue,
                    },
                    other => break other,
                }
            }
        };
        let next = match stop {
            Some(rx) => tokio::select! {
                next = mapped => next,
                _ = rx.wait_for(|stopping| *stopping) => None,
            },
            None => mapped.await,
        };
        match next {
            Some(Ok(e)) => Some((Ok::<_, Infallible>(Bytes::from(e.encode())), st)),
            end => {
                st.done = true;
                let failed = match end {
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "upstream stream failed");
                        st._guards.stream_failed();
                        Some(e.to_string())
                    }
                    _ => None,
                };
                match (&st.client_id, st.mapper.answered) {
                    (Some(id), false) => {
                        let why = failed.unwrap_or_else(|| "upstream ended the stream without an answer".to_owned());
                        let msg = json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": code::UPSTREAM_ERROR, "message": why}});
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

/// The one GET stream a client session may have open on this node (the SDK servers allow one per
/// session too); removed when the stream ends.
struct OpenStream {
    state: AppState,
    key: String,
}

impl OpenStream {
    fn enter(state: &AppState, key: &str) -> Option<OpenStream> {
        let mut open = state.streams.lock().ok()?;
        open.insert(key.to_owned()).then(|| OpenStream {
            state: state.clone(),
            key: key.to_owned(),
        })
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if let Ok(mut open) = self.state.streams.lock() {
            open.remove(&self.key);
        }
    }
}

/// `GET`: in session isolation (and without pooling) the upstream session's own event stream is
/// relayed, resuming after `Last-Event-ID` when the client sends one; shared isolation has no
/// upstream session of the client's own, so there is no stream (405). One stream per client
/// session on a node (a second gets 409); the upstream's headers must come within the control
/// timeout; the stream ends when the node starts stopping, so shutdown never waits on it.
pub(super) async fn relay_stream(
    state: &AppState,
    server: &Server,
    session: &ClientSession,
    last_event_id: Option<&str>,
) -> Result<Response, McpError> {
    if session.mode == SessionMode::Shared || session.sid.is_none() {
        return Err(McpError::NoStream(
            "no server-initiated stream for this session; answers stream on each POST",
        ));
    }
    if session.mode == SessionMode::Bound {
        session::touch(state, server, session).await?;
    }
    let Some(open) = OpenStream::enter(state, &session.key) else {
        return Err(McpError::StreamConflict);
    };
    match state
        .upstream
        .open_stream(&session::current_target(server, session)?, last_event_id)
        .await
    {
        Ok(Some(events)) => {
            let stop = Some(state.stopping.subscribe());
            Ok(events_until(events, Mapper::passthrough(true), None, Some(open), stop))
        }
        Ok(None) => Err(McpError::NoStream("the upstream offers no server-initiated stream")),
        Err(UpstreamError::SessionLost) => Err(McpError::SessionNotFound),
        Err(e) => Err(e.into()),
    }
}
