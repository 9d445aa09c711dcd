//! The admin REST API (seed paths): servers, pool configuration, bulk updates, the audit log.

pub mod audit;
pub mod ops;
pub mod pools;
pub mod servers;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;

use poolgate_shared::domain::server::ServerId;

use super::error::ApiError;

/// A `{id}` path segment that is a valid server id. An invalid one cannot name a server, so it
/// answers 404 like any unknown id.
pub struct ServerIdPath(pub ServerId);

impl<S: Send + Sync> FromRequestParts<S> for ServerIdPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_path", e.body_text()))?;
        ServerId::parse(&raw)
            .map(ServerIdPath)
            .map_err(|_| ApiError::not_found(format!("server {raw:?} not found")))
    }
}

/// After an admin change: forget the cached definition on this node and push the pool's new
/// configuration into the control plane, so the whole fleet acts on it at once. Best effort — if
/// the control plane is unreachable the pool is re-synced from the store when it is next missing.
pub(crate) async fn propagate(state: &crate::state::AppState, server: &poolgate_shared::domain::server::Server) {
    state.servers.invalidate(&server.id);
    state.slots.profiles().forget_init(&server.id);
    let spec = poolgate_control::PoolSpec::for_server(server);
    if let Err(e) = state.control.sync(&server.id, &spec).await {
        tracing::warn!(server_id = %server.id, error = %e, "pool configuration not pushed to the control plane");
    }
    if !server.pool.pool_enabled {
        // A disabled pool drains gracefully: running requests and bound clients finish.
        match ops::mark_draining(state, server).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(server_id = %server.id, sessions = n, "pool disabled: draining"),
            Err(e) => tracing::warn!(server_id = %server.id, error = %e, "pool disabled but not drained yet"),
        }
    }
}

/// The server, or the 404 every admin route answers for an unknown one.
pub(crate) async fn load_server(
    state: &crate::state::AppState,
    id: &ServerId,
) -> Result<poolgate_shared::domain::server::Server, ApiError> {
    state.store.get_server(id).await?.ok_or_else(|| server_not_found(id))
}

fn server_not_found(id: &ServerId) -> ApiError {
    ApiError::not_found(format!("server {id} not found"))
}
