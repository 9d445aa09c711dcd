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
        .route("/api/servers/{id}/pool/sessions", get(admin::ops::sessions))
        .route("/api/servers/{id}/pool/drain", axum::routing::post(admin::ops::drain))
        .route("/api/servers/{id}/pool/reset", axum::routing::post(admin::ops::reset))
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
        .layer(DefaultBodyLimit::max(mcp::MAX_MCP_BODY));
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .merge(api)
        .merge(mcp)
        .fallback(json::no_route)
        .method_not_allowed_fallback(json::wrong_method)
        .with_state(state)
}
