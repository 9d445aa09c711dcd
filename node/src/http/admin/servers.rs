//! `POST/GET/PUT/DELETE /api/servers[/{id}]`: registering upstream MCP servers.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use poolgate_shared::domain::pool::{PoolConfigPatch, PATCH_FIELDS};
use poolgate_shared::domain::server::{NewServerInput, Server, ServerPatch};
use poolgate_store::UpdateError;

use super::{server_not_found, ServerIdPath};
use crate::http::auth::{Admin, Caller, Reader};
use crate::http::error::ApiError;
use crate::http::json::{from_value, split_object, ApiJson};
use crate::state::AppState;
use poolgate_shared::config::redact_credentials;

/// Splits a body into its server part `T` and its pool part.
fn split_body<T: serde::de::DeserializeOwned>(body: Map<String, Value>) -> Result<(T, PoolConfigPatch), ApiError> {
    let (rest, pool) = split_object(body, PATCH_FIELDS);
    Ok((from_value(rest)?, from_value(pool)?))
}

pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let (mut input, pool): (NewServerInput, _) = split_body(body)?;
    input.pool = pool;
    let server = Server::from_input(&input, &state.config.pooling.defaults, poolgate_shared::domain::now())
        .map_err(ApiError::validation)?;
    state.store.create_server(&server, &caller.subject).await?;
    tracing::info!(server_id = %server.id, actor = %caller.subject, "server registered");
    let applied = super::propagate(&state, &server).await;
    let location = format!("/api/servers/{}", server.id);
    let mut resp = super::stored(StatusCode::CREATED, &server, applied);
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// A server as `caller` may see it: admins (who set the credentials, and export and restore
/// servers) get endpoint URLs as stored; readers get them without user info or query values,
/// where credentials such as `?api_key=…` live. Header values are never shown to anyone.
fn shown(mut server: Server, caller: &Caller) -> Server {
    if !caller.admin {
        for e in &mut server.endpoints {
            e.url = redact_credentials(&e.url);
        }
    }
    server
}

pub async fn list(State(state): State<AppState>, Reader(caller): Reader) -> Result<Json<Vec<Server>>, ApiError> {
    let servers = state.store.list_servers().await?;
    Ok(Json(servers.into_iter().map(|s| shown(s, &caller)).collect()))
}

pub async fn get(
    State(state): State<AppState>,
    Reader(caller): Reader,
    ServerIdPath(id): ServerIdPath,
) -> Result<Json<Server>, ApiError> {
    super::load_server(&state, &id).await.map(|s| Json(shown(s, &caller)))
}

pub async fn update(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ServerIdPath(id): ServerIdPath,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let (mut patch, pool): (ServerPatch, _) = split_body(body)?;
    patch.pool = pool;
    let now = poolgate_shared::domain::now();
    let server = state
        .store
        .update_server(&id, &caller.subject, "server.update", |s| s.patched(&patch, now))
        .await
        .map_err(|e| match e {
            UpdateError::NotFound => server_not_found(&id),
            UpdateError::Rejected(field) => ApiError::validation(field),
            UpdateError::Store(e) => e.into(),
        })?;
    tracing::info!(server_id = %id, actor = %caller.subject, "server updated");
    let applied = super::propagate(&state, &server).await;
    Ok(super::stored(StatusCode::OK, &server, applied))
}

pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ServerIdPath(id): ServerIdPath,
) -> Result<Response, ApiError> {
    // Read first: closing its upstream sessions takes its headers (credentials).
    let before = state.store.get_server(&id).await?;
    if state.store.delete_server(&id, &caller.subject).await? {
        tracing::info!(server_id = %id, actor = %caller.subject, "server deleted");
        state.servers.invalidate(&id);
        state.slots.profiles().forget_init(&id);
        // Its pool goes: every slot leaves, every binding ends, the sessions are closed; the keys
        // go once the last lease ended (the reconcile pass finishes what is left).
        let applied = super::apply(&state, &id, &poolgate_control::PoolSpec::tombstone(), before.as_ref()).await;
        if applied.is_ok() {
            let _ = state.control.forget(&id).await;
        }
        Ok(match applied {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(note) => super::stored(StatusCode::NO_CONTENT, serde_json::json!({"deleted": id}), Err(note)),
        })
    } else {
        Err(server_not_found(&id))
    }
}
