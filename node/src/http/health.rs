//! Probes. `/health` is liveness and touches nothing; `/ready` checks the database and the
//! control plane concurrently, each within a bound, and names what is down.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// Longest a readiness check waits for one dependency.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (db, control) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()),
        tokio::time::timeout(CHECK_TIMEOUT, state.control.ping()),
    );
    let mut causes = Vec::new();
    match db {
        Ok(Ok(())) => {}
        Ok(Err(e)) => causes.push(json!({ "component": "database", "error": e.to_string() })),
        Err(_) => causes.push(json!({ "component": "database", "error": "timed out" })),
    }
    match control {
        Ok(Ok(())) => {}
        Ok(Err(e)) => causes.push(json!({ "component": state.control.backend(), "error": e.to_string() })),
        Err(_) => causes.push(json!({ "component": state.control.backend(), "error": "timed out" })),
    }
    let detail = json!({
        "node_id": state.node_id,
        "mode": format!("{:?}", state.config.mode()).to_lowercase(),
        "control_plane": state.control.backend(),
        // Embedded mode only: whether this node runs the housekeeping (the coordinator's role).
        "leader_term": state.leadership.as_ref().and_then(|l| l.term()),
    });
    if causes.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready", "detail": detail })))
    } else {
        for c in &causes {
            tracing::warn!(cause = %c, "not ready");
        }
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "causes": causes, "detail": detail })),
        )
    }
}
