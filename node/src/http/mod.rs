//! The node's HTTP surface: probes and the admin API (the MCP endpoint arrives with the data
//! plane). Every answer that is not a success is JSON (see [`error::ApiError`]), including
//! unknown routes, wrong methods, bad paths and oversized bodies.

pub mod admin;
pub mod auth;
pub mod error;
pub mod health;
pub mod json;
pub mod mcp;

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

/// Counts and times every answered request for this node's metrics, by kind of route.
async fn track(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let kind = if path.starts_with("/servers/") {
        "mcp"
    } else if path.starts_with("/api/") {
        "admin"
    } else {
        "probe"
    };
    let started = std::time::Instant::now();
    if kind != "probe" && state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        let response = draining_refusal();
        state
            .metrics
            .observe(kind, response.status().as_u16(), started.elapsed());
        return response;
    }
    // A standalone GET stream (server-to-client messages) has no answer pending: it does not hold
    // up a shutdown, it ends with it and the client reopens it on another node.
    if kind == "mcp" && request.method() == axum::http::Method::GET {
        return next.run(request).await;
    }
    let in_flight = state.requests.enter();
    let response = next.run(request).await;
    state
        .metrics
        .observe(kind, response.status().as_u16(), started.elapsed());
    response.map(|body| crate::drain::TrackedBody::wrap(body, in_flight))
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
