//! The client-facing MCP endpoint: `POST/GET/DELETE /servers/{server_id}/mcp`, Streamable HTTP
//! for session-era clients (2025-03-26, 2025-06-18, 2025-11-25).
//!
//! `initialize` is answered from a warm upstream session's cached result (or one created for the
//! client through a reservation), and the client gets a gateway-issued, encrypted session id that
//! names its user, server, binding and upstream session ([`poolgate_shared::session_id`]). Every
//! later request is routed from that id alone — any node, no Redis read on the hot path:
//! - **bound** (session isolation, the default): the client owns its upstream session; requests
//!   go straight to it; the binding's idle TTL is refreshed at most every few seconds per node;
//! - **shared** (shared isolation): each request leases a slot by strategy, with request ids and
//!   progress tokens rewritten to be unique on the shared upstream session (I9);
//! - **direct** (pooling disabled): a fresh upstream session per client session.

pub mod modern;
mod proxy;
pub mod rpc;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use poolgate_shared::control::{AcquireRequest, Acquired, Committed, ControlError, Lease, Outcome, SlotMeta};
use poolgate_shared::domain::pool::Isolation;
use poolgate_shared::domain::server::{Server, ServerId};
use poolgate_shared::session_id::ClientSession;
use poolgate_shared::upstream::{
    SessionTarget, UpstreamError, LATEST_SESSION_VERSION, SESSION_HEADER, SESSION_VERSIONS, STATELESS_VERSION,
};

use crate::http::auth::Reader;
use crate::state::AppState;

/// Largest MCP request body accepted.
pub const MAX_MCP_BODY: usize = 4 * 1024 * 1024;

/// How long a node trusts what it learned from an endpoint's `server/discover`.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// The endpoint's `server/discover` result if it speaks the sessionless 2026-07-28 revision
/// (cached per endpoint on this node); `None` when it needs the session-era handshake or cannot be
/// reached (the handshake then reports the failure).
pub(crate) async fn discovered(state: &AppState, server: &Server, url: &str) -> Option<Value> {
    if let Ok(cache) = state.discovery.lock() {
        if let Some((at, result)) = cache.get(url) {
            if at.elapsed() < DISCOVERY_TTL {
                return result.clone();
            }
        }
    }
    match state.upstream.discover(url, &server.upstream_headers.pairs()).await {
        Ok(result) => {
            if let Ok(mut cache) = state.discovery.lock() {
                cache.insert(url.to_owned(), (std::time::Instant::now(), result.clone()));
            }
            result
        }
        Err(e) => {
            tracing::debug!(%url, error = %e, "server/discover failed");
            None
        }
    }
}

/// A session-era `initialize` result made from a sessionless server's `server/discover` result.
/// The server's identity is in `_meta["io.modelcontextprotocol/serverInfo"]` (older drafts put
/// it at the top level); session-era clients require it, so it is never null.
fn init_from_discovery(d: &Value) -> Value {
    let info = d
        .pointer("/_meta")
        .and_then(|m| m.get("io.modelcontextprotocol/serverInfo"))
        .or_else(|| d.get("serverInfo"))
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"name": "upstream", "version": "unknown"}));
    let mut r = serde_json::json!({
        "protocolVersion": LATEST_SESSION_VERSION,
        "capabilities": d.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})),
        "serverInfo": info,
    });
    if let Some(i) = d.get("instructions") {
        r["instructions"] = i.clone();
    }
    r
}

pub(crate) const MODE_BOUND: &str = "bound";
/// Binding keys of 2026-07-28 clients start with this: `user:<subject>:<server>`.
pub(crate) const USER_KEY_PREFIX: &str = "user:";
pub(crate) const MODE_SHARED: &str = "shared";
pub(crate) const MODE_DIRECT: &str = "direct";

/// The version to speak with the client: what it asked for if poolgate and the upstream session
/// both speak it (the older of the two when they differ), else the upstream session's version.
fn client_version(requested: Option<&str>, upstream: &str) -> String {
    match requested {
        Some(v) if SESSION_VERSIONS.contains(&v) => std::cmp::min(v, upstream).to_owned(),
        _ => upstream.to_owned(),
    }
}

/// The version to ask an upstream for when creating a session.
fn upstream_version(requested: Option<&str>) -> &str {
    match requested {
        Some(v) if SESSION_VERSIONS.contains(&v) => v,
        _ => LATEST_SESSION_VERSION,
    }
}

async fn server_for(state: &AppState, raw: &str, id: &Value) -> Result<Arc<Server>, Response> {
    let Ok(server_id) = ServerId::parse(raw) else {
        return Err(rpc::error(
            StatusCode::NOT_FOUND,
            id,
            rpc::INVALID_REQUEST,
            format!("unknown server {raw:?}"),
        ));
    };
    match state.servers.get(&state.store, &server_id).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(rpc::error(
            StatusCode::NOT_FOUND,
            id,
            rpc::INVALID_REQUEST,
            format!("unknown server {raw:?}"),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "server lookup failed");
            Err(rpc::error(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                rpc::INTERNAL_ERROR,
                "configuration store unavailable",
            ))
        }
    }
}

fn session_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

/// The client's session, if the id is ours, for this user and this server (I12).
fn client_session(state: &AppState, headers: &HeaderMap, subject: &str, server: &str) -> Option<ClientSession> {
    let s = state.sessions.decode(session_header(headers)?)?;
    (s.sub == subject && s.srv == server).then_some(s)
}

pub async fn post(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(raw_server): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc::error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                rpc::PARSE_ERROR,
                format!("Parse error: {e}"),
            )
        }
    };
    if !msg.is_object() {
        let what = if msg.is_array() {
            "batches are not supported"
        } else {
            "a JSON-RPC message must be an object"
        };
        return rpc::error(StatusCode::BAD_REQUEST, &Value::Null, rpc::INVALID_REQUEST, what);
    }
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let server = match server_for(&state, &raw_server, &id).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    if modern::is_modern(&headers, &msg) {
        return modern::handle(&state, &server, &caller.subject, &headers, msg).await;
    }
    let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
    if method == "initialize" {
        // Always a new client session (a client re-initializing after a 404 may still send its
        // old id); the upstream session behind it is the gateway's business.
        return initialize(&state, &server, &caller.subject, &msg, &id).await;
    }
    if method == "notifications/initialized" && msg.get("id").is_none() {
        // The gateway did the upstream handshake itself; this is the client's half, acknowledged
        // here (forwarding it would send a second `initialized` to a warm upstream session).
        return StatusCode::ACCEPTED.into_response();
    }
    if session_header(&headers).is_none() {
        return rpc::error(
            StatusCode::BAD_REQUEST,
            &id,
            rpc::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        );
    }
    let Some(session) = client_session(&state, &headers, &caller.subject, server.id.as_str()) else {
        return rpc::session_not_found(&id);
    };
    proxy::forward(&state, &server, &session, msg, body).await
}

/// GET and DELETE: 405 for sessionless clients; otherwise the caller's own session of this
/// server, or 404.
async fn existing_session(
    state: &AppState,
    subject: &str,
    raw_server: &str,
    headers: &HeaderMap,
) -> Result<(Arc<Server>, ClientSession), Response> {
    if modern::is_modern(headers, &Value::Null) {
        return Err(modern::method_not_allowed());
    }
    let server = server_for(state, raw_server, &Value::Null).await?;
    match client_session(state, headers, subject, server.id.as_str()) {
        Some(session) => Ok((server, session)),
        None => Err(rpc::session_not_found(&Value::Null)),
    }
}

pub async fn get(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(raw_server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (server, session) = match existing_session(&state, &caller.subject, &raw_server, &headers).await {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    proxy::relay_stream(&state, &server, &session, last).await
}

pub async fn delete(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(raw_server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (server, session) = match existing_session(&state, &caller.subject, &raw_server, &headers).await {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    // This node's touch bookkeeping for the session ends with it (sessions that just go idle are
    // dropped when the map is pruned, see proxy::touch).
    if let Ok(mut m) = state.touched.lock() {
        m.remove(&session.key);
    }
    match session.mode.as_str() {
        MODE_BOUND => match state.control.unbind(&server.id, &session.key).await {
            Ok(changed) => {
                proxy::close_slots(&state, &server, changed.closed);
                if changed.changed {
                    StatusCode::OK.into_response()
                } else {
                    rpc::session_not_found(&Value::Null)
                }
            }
            Err(e) => control_error(&Value::Null, e),
        },
        MODE_DIRECT => {
            let target = proxy::target(&server, &session);
            if let Err(e) = state.upstream.close(&target).await {
                tracing::warn!(server_id = %server.id, error = %e, "closing the upstream session failed");
            }
            StatusCode::OK.into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

pub(crate) fn control_error(id: &Value, e: ControlError) -> Response {
    match e {
        ControlError::Exhausted(t) => {
            let message = format!(
                "no upstream session became free within {}s (pool exhausted)",
                t.as_secs()
            );
            let mut response = rpc::error(StatusCode::SERVICE_UNAVAILABLE, id, rpc::POOL_EXHAUSTED, message);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            response
        }
        ControlError::BindingLost => rpc::session_not_found(id),
        ControlError::UnknownPool(_) => rpc::error(StatusCode::NOT_FOUND, id, rpc::INVALID_REQUEST, "unknown server"),
        other => {
            tracing::warn!(error = %other, "control plane call failed");
            rpc::error(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                rpc::INTERNAL_ERROR,
                "pool coordination unavailable, retry later",
            )
        }
    }
}

fn upstream_failure(id: &Value, e: &UpstreamError) -> Response {
    rpc::error(
        StatusCode::OK,
        id,
        rpc::UPSTREAM_ERROR,
        format!("upstream MCP server failed: {e}"),
    )
}

/// A lease on a slot, creating the slot's upstream session if the pool asks for one.
pub(crate) async fn lease_slot(
    state: &AppState,
    server: &Server,
    key: Option<&str>,
    requested: Option<&str>,
    id: &Value,
) -> Result<Lease, Response> {
    let req = AcquireRequest::new(&state.node_id, key);
    let timeout = Duration::from_secs(server.pool.pool_timeout.into());
    let mut acquired = state.pools.acquire(&server.id, &req, timeout).await;
    if matches!(acquired, Err(ControlError::BindingLost)) && key.is_some_and(|k| k.starts_with(USER_KEY_PREFIX)) {
        // A per-user binding (2026-07-28 clients have no session to lose): the acquire already
        // dropped the dead binding, so binding again gives the user a fresh upstream session.
        acquired = state
            .pools
            .acquire(&server.id, &AcquireRequest::new(&state.node_id, key), timeout)
            .await;
    }
    match acquired {
        Ok(Acquired::Leased(lease)) => Ok(lease),
        Ok(Acquired::Create(resv)) => {
            let Some(endpoint) = server.endpoints.get(resv.endpoint as usize) else {
                let _ = state.control.abort(&server.id, &resv.id).await;
                return Err(rpc::error(
                    StatusCode::OK,
                    id,
                    rpc::INTERNAL_ERROR,
                    "endpoint list changed; retry",
                ));
            };
            let init = match discovered(state, server, &endpoint.url).await {
                // A sessionless upstream: the slot is a concurrency slot, no handshake.
                Some(d) => poolgate_shared::upstream::Initialized {
                    session_id: None,
                    protocol_version: STATELESS_VERSION.to_owned(),
                    result: init_from_discovery(&d),
                },
                None => {
                    let version = upstream_version(requested);
                    match state
                        .upstream
                        .initialize(&endpoint.url, &server.upstream_headers.pairs(), version)
                        .await
                    {
                        Ok(i) => i,
                        Err(e) => {
                            let _ = state.control.abort(&server.id, &resv.id).await;
                            return Err(upstream_failure(id, &e));
                        }
                    }
                }
            };
            let meta = SlotMeta {
                session_id: init.session_id.clone(),
                protocol_version: Some(init.protocol_version.clone()),
                endpoint: Some(endpoint.url.clone()),
                init: Some(init.result.to_string()),
            };
            let slot_id = uuid::Uuid::new_v4().simple().to_string();
            match state.control.commit(&server.id, &resv.id, &slot_id, &meta).await {
                Ok(Committed::Leased(lease)) => Ok(lease),
                Ok(Committed::Added(_)) => Err(rpc::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    rpc::INTERNAL_ERROR,
                    "binding changed; retry",
                )),
                Err(e) => {
                    // The slot never joined the pool: end its upstream session.
                    let target = SessionTarget {
                        url: endpoint.url.clone(),
                        session_id: init.session_id,
                        protocol_version: init.protocol_version,
                        headers: server.upstream_headers.pairs(),
                    };
                    let _ = state.upstream.close(&target).await;
                    Err(control_error(id, e))
                }
            }
        }
        Err(e) => Err(control_error(id, e)),
    }
}

async fn initialize(state: &AppState, server: &Server, subject: &str, msg: &Value, id: &Value) -> Response {
    let requested = msg.pointer("/params/protocolVersion").and_then(Value::as_str);
    let pooled = state.config.pooling.enabled && server.pool.pool_enabled;
    let now = poolgate_shared::auth::now_unix();
    let (session, result) = if !pooled {
        let Some(endpoint) = server.endpoints.first() else {
            return rpc::error(StatusCode::OK, id, rpc::INTERNAL_ERROR, "server has no endpoint");
        };
        let init = match discovered(state, server, &endpoint.url).await {
            Some(d) => poolgate_shared::upstream::Initialized {
                session_id: None,
                protocol_version: STATELESS_VERSION.to_owned(),
                result: init_from_discovery(&d),
            },
            None => match state
                .upstream
                .initialize(
                    &endpoint.url,
                    &server.upstream_headers.pairs(),
                    upstream_version(requested),
                )
                .await
            {
                Ok(i) => i,
                Err(e) => return upstream_failure(id, &e),
            },
        };
        let session = ClientSession {
            sub: subject.to_owned(),
            srv: server.id.to_string(),
            key: String::new(),
            url: endpoint.url.clone(),
            sid: init.session_id,
            pv: init.protocol_version.clone(),
            cv: client_version(requested, &init.protocol_version),
            mode: MODE_DIRECT.to_owned(),
            iat: now,
        };
        (session, init.result)
    } else {
        // A sessionless upstream has no session state to isolate: its slots are concurrency
        // slots leased per request, whatever the isolation setting.
        let sessionless = match server.endpoints.first() {
            Some(e) => discovered(state, server, &e.url).await.is_some(),
            None => false,
        };
        let bound = server.pool.pool_isolation == Isolation::Session && !sessionless;
        // Every client session gets a unique key: its binding in session isolation, and the
        // scope of its in-flight request ids in both isolations.
        let key = format!("{subject}:{}:{}", server.id, uuid::Uuid::new_v4().simple());
        let cached = if bound {
            None
        } else {
            state.init_results.lock().ok().and_then(|m| m.get(&server.id).cloned())
        };
        let (meta, pv, result) = match cached {
            Some((pv, result)) => (SlotMeta::default(), pv, result),
            None => {
                let lease = match warm_lease(state, server, bound.then_some(key.as_str()), requested, id).await {
                    Ok(l) => l,
                    Err(resp) => return resp,
                };
                let meta = lease.slot.meta.clone();
                let _ = state.control.release(&server.id, &lease.id, Outcome::default()).await;
                let pv = meta
                    .protocol_version
                    .clone()
                    .unwrap_or_else(|| LATEST_SESSION_VERSION.to_owned());
                let result: Value = meta
                    .init
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or(Value::Null);
                if !bound {
                    if let Ok(mut m) = state.init_results.lock() {
                        m.insert(server.id.clone(), (pv.clone(), result.clone()));
                    }
                }
                (meta, pv, result)
            }
        };
        let session = ClientSession {
            sub: subject.to_owned(),
            srv: server.id.to_string(),
            key,
            url: meta.endpoint.clone().unwrap_or_default(),
            sid: if bound { meta.session_id.clone() } else { None },
            pv: pv.clone(),
            cv: client_version(requested, &pv),
            mode: if bound { MODE_BOUND } else { MODE_SHARED }.to_owned(),
            iat: now,
        };
        (session, result)
    };
    let mut result = result;
    if let Some(obj) = result.as_object_mut() {
        obj.insert("protocolVersion".into(), Value::String(session.cv.clone()));
    }
    let encoded = match state.sessions.encode(&session) {
        Ok(e) => e,
        Err(e) => {
            return rpc::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                id,
                rpc::INTERNAL_ERROR,
                format!("session id: {e}"),
            )
        }
    };
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        resp.headers_mut().insert(SESSION_HEADER, v);
    }
    resp
}

/// A lease for a new client session, pre-pinging a warm upstream session older than
/// `POOL_PRE_PING_WINDOW` (`pool_pre_ping`); a dead one is marked unhealthy and another is tried once.
async fn warm_lease(
    state: &AppState,
    server: &Server,
    key: Option<&str>,
    requested: Option<&str>,
    id: &Value,
) -> Result<Lease, Response> {
    for attempt in 0..2 {
        let lease = lease_slot(state, server, key, requested, id).await?;
        // Control-plane time of this grant: the expiry minus the lease TTL.
        let granted_ms = lease.expires_ms - i64::from(server.pool.pool_lease_ttl) * 1000;
        let window_ms = state.config.pooling.pre_ping_window.as_millis() as i64;
        let young = granted_ms - lease.slot.created_ms < window_ms;
        if !server.pool.pool_pre_ping || young || attempt == 1 {
            return Ok(lease);
        }
        let target = SessionTarget::for_slot(&lease.slot, server.upstream_headers.pairs());
        match state.upstream.ping(&target).await {
            Ok(()) => return Ok(lease),
            Err(e) => {
                tracing::info!(server_id = %server.id, slot = %lease.slot.id, error = %e, "pre-ping failed; slot marked unhealthy");
                if let Some(k) = key {
                    let _ = state.control.unbind(&server.id, k).await;
                }
                let failed = Outcome {
                    error: true,
                    ..Default::default()
                };
                let _ = state.control.release(&server.id, &lease.id, failed).await;
                let unhealthy = poolgate_shared::control::SlotState::Unhealthy;
                if let Ok(changed) = state.control.mark(&server.id, &lease.slot.id, unhealthy).await {
                    proxy::close_slots(state, server, changed.closed);
                }
            }
        }
    }
    Err(rpc::error(
        StatusCode::OK,
        id,
        rpc::UPSTREAM_ERROR,
        "no healthy upstream session",
    ))
}
