//! The node's HTTP surface: probes, the admin API and the MCP endpoint, behind one middleware
//! (`track`) that refuses requests while draining, admits or sheds them ([`admission`]) and
//! counts them. Every answer that is not a success is JSON (see [`error::ApiError`]), including
//! unknown routes, wrong methods, bad paths and oversized bodies.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod error;
pub mod health;
pub mod json;
pub mod mcp;

use admission::RouteKind;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use axum::Router;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.server.admin_body_limit;
    let api = Router::new()
        .route("/api/servers", get(admin::servers::list).post(admin::servers::create))
        .route("/api/servers/pools", get(admin::pools::list_pools))
        .route("/api/servers/pools/health", get(admin::ops::health))
        .route("/api/servers/{id}/pool/stats", get(admin::ops::stats))
        .route("/api/servers/{id}/health", get(admin::ops::server_health))
        .route("/api/servers/{id}/pool/sessions", get(admin::ops::sessions))
        .route("/api/servers/{id}/pool/drain", axum::routing::post(admin::ops::drain))
        .route("/api/servers/{id}/pool/reset", axum::routing::post(admin::ops::reset))
        .route("/api/servers/{id}/pool/optimize", get(admin::ops::optimize))
        .route("/api/servers/bulk-update", put(admin::pools::bulk_update))
        .route(
            "/api/servers/{id}",
            get(admin::servers::get)
                .put(admin::servers::update)
                .delete(admin::servers::delete),
        )
        .route(
            "/api/servers/{id}/pool/config",
            get(admin::pools::get_config).put(admin::pools::put_config),
        )
        .route("/api/audit", get(admin::audit::list))
        .layer(DefaultBodyLimit::max(body_limit));
    let mcp = Router::new()
        .route(
            "/servers/{server_id}/mcp",
            get(mcp::get).post(mcp::post).delete(mcp::delete),
        )
        .layer(DefaultBodyLimit::max(mcp::MAX_MCP_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), mcp::origin::guard));
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .merge(api)
        .merge(mcp)
        .fallback(json::no_route)
        .method_not_allowed_fallback(json::wrong_method)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Every request passes here: refused while draining, shed over the node's concurrency cap
/// ([`admission`]), its body given a deadline, counted in flight until its answer is sent, and
/// counted and timed for this node's metrics, by kind of route.
async fn track(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let kind = RouteKind::of(request.uri().path());
    let started = std::time::Instant::now();
    let observe = |response: &axum::response::Response| {
        state
            .metrics
            .observe(kind.label(), response.status().as_u16(), started.elapsed());
    };
    if kind != RouteKind::Probe && state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        let response = draining_refusal();
        observe(&response);
        return response;
    }
    let body_timeout = state.config.server.body_read_timeout;
    let (request, body_missed) = admission::with_body_deadline(request, body_timeout);
    // A standalone GET stream (server-to-client messages) has no answer pending: it does not hold
    // up a shutdown, it ends with it and the client reopens it on another node.
    let get_stream = kind == RouteKind::Mcp && request.method() == axum::http::Method::GET;
    let in_flight = match (kind, state.config.server.max_concurrent_requests) {
        (RouteKind::Probe, _) => None,
        _ if get_stream => None,
        (_, None) => Some(state.requests.enter()),
        (_, Some(cap)) => match state.requests.try_enter(cap) {
            Some(guard) => Some(guard),
            None => {
                state.metrics.shed.with_label_values(&[kind.label()]).inc();
                let response = admission::overloaded(kind);
                observe(&response);
                return response;
            }
        },
    };
    let mut response = next.run(request).await;
    if body_missed.load(std::sync::atomic::Ordering::SeqCst) {
        state.metrics.connection_timeouts.with_label_values(&["body"]).inc();
        response = admission::body_timed_out(kind, body_timeout);
    }
    if get_stream {
        return response;
    }
    observe(&response);
    match in_flight {
        Some(guard) => response.map(|body| crate::drain::TrackedBody::wrap(body, guard)),
        None => response,
    }
}

/// 503 for a request that reached a node shutting down: retry elsewhere at once.
fn draining_refusal() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut response = error::ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "draining",
        "this node is shutting down; retry the request (any node serves any session)",
    )
    .into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("0"),
    );
    headers.insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}
