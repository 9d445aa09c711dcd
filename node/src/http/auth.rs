//! Bearer authentication as extractors: [`Reader`] for any valid token, [`Admin`] for a role in
//! `POOL_ADMIN_ROLES` or the `servers.update` permission — on the admin API, where
//! `POOL_ADMIN_AUTH_REQUIRED` (seed 000; default: `AUTH_REQUIRED`) decides whether a token is
//! needed — and [`McpCaller`] on the MCP endpoint, governed by `AUTH_REQUIRED`. Without a
//! required token every caller is the anonymous admin `anonymous`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use poolgate_shared::auth::{now_unix, Claims};

use super::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub subject: String,
    pub admin: bool,
}

/// Any authenticated caller.
pub struct Reader(pub Caller);

/// A caller allowed to change servers and pools.
pub struct Admin(pub Caller);

/// A caller of the MCP endpoint (`AUTH_REQUIRED`).
pub struct McpCaller(pub Caller);

fn authenticate(parts: &Parts, state: &AppState, required: bool) -> Result<Caller, ApiError> {
    if !required {
        return Ok(Caller {
            subject: "anonymous".to_owned(),
            admin: true,
        });
    }
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not valid text"))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::unauthorized("Authorization must use the Bearer scheme"))?;
    let claims: Claims = state
        .jwt
        .verify(token, now_unix())
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let admin = claims.is_admin(&state.config.auth.admin_roles);
    Ok(Caller {
        subject: claims.sub,
        admin,
    })
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(parts, state, state.config.auth.admin_required()).map(Reader)
    }
}

impl FromRequestParts<AppState> for McpCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(parts, state, state.config.auth.required).map(McpCaller)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state, state.config.auth.admin_required())?;
        if !caller.admin {
            return Err(ApiError::forbidden(format!(
                "this needs a role in POOL_ADMIN_ROLES ({}) or the servers.update permission",
                state.config.auth.admin_roles.join(", ")
            )));
        }
        Ok(Admin(caller))
    }
}
