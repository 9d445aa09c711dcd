//! Pool configuration: `PUT/GET /api/servers/{id}/pool/config`, `GET /api/servers/pools` (the
//! seed's configuration backup export) and `PUT /api/servers/bulk-update` (all or nothing).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use poolgate_shared::domain::pool::{FieldError, PoolConfig, PoolConfigPatch, PATCH_FIELDS};
use poolgate_shared::domain::server::{Server, ServerId};
use poolgate_store::{BulkError, UpdateError};

use super::{server_not_found, ServerIdPath};
use crate::http::auth::{Admin, Reader};
use crate::http::error::ApiError;
use crate::http::json::{from_value, split_object, ApiJson};
use crate::state::AppState;

/// One pool's configuration with its server.
#[derive(Serialize)]
pub struct PoolView {
    pub server_id: ServerId,
    pub name: String,
    #[serde(flatten)]
    pub pool: PoolConfig,
}

impl From<&Server> for PoolView {
    fn from(s: &Server) -> Self {
        PoolView {
            server_id: s.id.clone(),
            name: s.name.clone(),
            pool: s.pool,
        }
    }
}

fn require_fields(patch: &PoolConfigPatch) -> Result<(), ApiError> {
    if patch.is_empty() {
        return Err(ApiError::validation(FieldError::new(
            "body",
            "must set at least one pool field",
        )));
    }
    Ok(())
}

/// The server with `patch` applied to its pool, or the rule it breaks.
fn with_pool(server: &Server, patch: &PoolConfigPatch, now: chrono::DateTime<Utc>) -> Result<Server, FieldError> {
    let mut next = server.clone();
    next.pool = server.pool.apply(patch)?;
    next.set_explicitly(patch);
    next.updated_at = now;
    Ok(next)
}

pub async fn get_config(
    State(state): State<AppState>,
    Reader(_): Reader,
    ServerIdPath(id): ServerIdPath,
) -> Result<Json<PoolView>, ApiError> {
    let server = super::load_server(&state, &id).await?;
    Ok(Json(PoolView::from(&server)))
}

pub async fn put_config(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ServerIdPath(id): ServerIdPath,
    ApiJson(patch): ApiJson<PoolConfigPatch>,
) -> Result<axum::response::Response, ApiError> {
    require_fields(&patch)?;
    let now = poolgate_shared::domain::now();
    let server = state
        .store
        .update_server(&id, &caller.subject, "pool.config", |s| with_pool(s, &patch, now))
        .await
        .map_err(|e| match e {
            UpdateError::NotFound => server_not_found(&id),
            UpdateError::Rejected(field) => ApiError::validation(field),
            UpdateError::Store(e) => e.into(),
        })?;
    tracing::info!(server_id = %id, actor = %caller.subject, ?patch, "pool configuration changed");
    let applied = super::propagate(&state, &server).await;
    Ok(super::stored(StatusCode::OK, PoolView::from(&server), applied))
}

pub async fn list_pools(State(state): State<AppState>, Reader(_): Reader) -> Result<Json<Vec<PoolView>>, ApiError> {
    let servers = state.store.list_servers().await?;
    Ok(Json(servers.iter().map(PoolView::from).collect()))
}

/// The non-pool part of a bulk-update body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkTarget {
    /// The servers to change; all servers when absent.
    #[serde(default)]
    server_ids: Option<Vec<String>>,
}

#[derive(Serialize)]
pub struct BulkResult {
    pub updated: usize,
    pub server_ids: Vec<ServerId>,
}

pub async fn bulk_update(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<axum::response::Response, ApiError> {
    let (rest, pool) = split_object(body, PATCH_FIELDS);
    let target: BulkTarget = from_value(rest)?;
    let patch: PoolConfigPatch = from_value(pool)?;
    require_fields(&patch)?;
    let ids = match &target.server_ids {
        None => None,
        Some(raw) => Some(
            raw.iter()
                .enumerate()
                .map(|(i, r)| ServerId::parse(r).map_err(|e| FieldError::new(format!("server_ids[{i}]"), e.rule)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(ApiError::validation)?,
        ),
    };
    let now = poolgate_shared::domain::now();
    let updated = state
        .store
        .bulk_update(ids.as_deref(), &caller.subject, "pool.bulk_update", |s| {
            with_pool(s, &patch, now)
        })
        .await
        .map_err(|e| match e {
            BulkError::NotFound(id) => {
                let mut err = server_not_found(&id);
                err.message = format!("server {id} not found; nothing was changed");
                err
            }
            BulkError::Rejected(id, field) => {
                let mut err = ApiError::validation(field);
                err.message = format!("server {id}: {}; nothing was changed", err.message);
                err
            }
            BulkError::Store(e) => e.into(),
        })?;
    tracing::info!(actor = %caller.subject, count = updated.len(), ?patch, "bulk pool update");
    let mut applied = Ok(());
    for server in &updated {
        if let Err(note) = super::propagate(&state, server).await {
            applied = Err(note);
        }
    }
    let result = BulkResult {
        updated: updated.len(),
        server_ids: updated.into_iter().map(|s| s.id).collect(),
    };
    Ok(super::stored(StatusCode::OK, result, applied))
}
