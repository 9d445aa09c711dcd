//! `GET /api/audit`: the admin change log, newest first (admins only: it names people).

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use poolgate_shared::domain::server::ServerId;
use poolgate_store::AuditEntry;

use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::state::AppState;

/// Page size when the caller does not say.
const DEFAULT_LIMIT: i64 = 100;

#[derive(Deserialize)]
pub struct AuditQuery {
    server_id: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let server_id = q
        .server_id
        .as_deref()
        .map(ServerId::parse)
        .transpose()
        .map_err(|e| ApiError::validation(poolgate_shared::domain::pool::FieldError::new("server_id", e.rule)))?;
    Ok(Json(
        state
            .store
            .list_audit(server_id.as_ref(), q.limit.unwrap_or(DEFAULT_LIMIT))
            .await?,
    ))
}
