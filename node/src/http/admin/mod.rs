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
/// configuration into the control plane, so the whole fleet acts on it at once (slots at removed
/// endpoints or opened with old credentials leave and are closed). The database is the truth: if
/// the control plane cannot be reached, the change is stored all the same and the reconcile pass
/// applies it within `POOL_MANAGER_RECONCILE_INTERVAL`; the returned note says so, and the
/// handler answers 202 with it instead of a silent 200 ([`stored`]).
pub(crate) async fn propagate(
    state: &crate::state::AppState,
    server: &poolgate_shared::domain::server::Server,
) -> Result<(), String> {
    state.servers.invalidate(&server.id);
    state.slots.profiles().forget_init(&server.id);
    let spec = poolgate_control::PoolSpec::for_server(server);
    apply(state, &server.id, &spec, Some(server)).await?;
    if !server.pool.pool_enabled {
        // A disabled pool drains gracefully: running requests and bound clients finish.
        match ops::mark_draining(state, server).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(server_id = %server.id, sessions = n, "pool disabled: draining"),
            Err(e) => tracing::warn!(server_id = %server.id, error = %e, "pool disabled but not drained yet"),
        }
    }
    Ok(())
}

/// Syncs `spec` into the control plane and closes the upstream sessions of the slots that left
/// (the sync puts them in the pool's closing outbox); the reason when the control plane failed.
pub(crate) async fn apply(
    state: &crate::state::AppState,
    id: &ServerId,
    spec: &poolgate_control::PoolSpec,
    server: Option<&poolgate_shared::domain::server::Server>,
) -> Result<(), String> {
    let pending = |e: poolgate_control::ControlError| {
        tracing::warn!(server_id = %id, error = %e, "change stored; the control plane applies it on the next reconcile pass");
        format!(
            "stored; not yet applied by the control plane ({e}); the reconcile pass applies it within {}s",
            state.config.pooling.manager.reconcile_interval.as_secs()
        )
    };
    state.slots.converge(id, spec, server).await.map_err(pending)?;
    Ok(())
}

/// The answer to an admin change: `status` with `body`, or 202 with a `Warning` header naming
/// what is pending when the control plane has not applied it yet.
pub(crate) fn stored<T: serde::Serialize>(
    status: StatusCode,
    body: T,
    applied: Result<(), String>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match applied {
        Ok(()) => (status, axum::Json(body)).into_response(),
        Err(note) => {
            let mut resp = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
            let warning = format!("199 poolgate \"{}\"", note.replace('"', "'"));
            if let Ok(v) = axum::http::HeaderValue::from_str(&warning) {
                resp.headers_mut().insert(axum::http::header::WARNING, v);
            }
            resp
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
