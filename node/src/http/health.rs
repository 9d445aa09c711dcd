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
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        causes.push(json!({ "component": "node", "error": "draining: shutting down" }));
    }
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

/// `GET /metrics`: fleet-wide pool series (cached, see [`crate::metrics`]) and this node's own.
/// `GET /metrics`; with `METRICS_AUTH_REQUIRED=true` it needs a bearer token like the API.
pub async fn metrics(
    State(state): State<AppState>,
    caller: Result<crate::http::auth::Reader, crate::http::error::ApiError>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if state.config.auth.metrics_auth_required {
        if let Err(refused) = caller {
            return refused.into_response();
        }
    }
    let fleet = state.metrics.fleet_text(|| fleet_figures(&state)).await;
    state
        .metrics
        .in_flight
        .set(i64::try_from(state.requests.in_flight()).unwrap_or(i64::MAX));
    let text = format!("{fleet}{}", state.metrics.node_text());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Reads every enabled pool's figures; `None` if the store or the control plane does not answer.
async fn fleet_figures(state: &AppState) -> Option<String> {
    use crate::metrics::{render_fleet, PoolFigures};
    let servers = match state.store.list_servers().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: servers unavailable");
            return None;
        }
    };
    let leader = state.control.leader().await.ok()?;
    let mut pools = Vec::new();
    for server in servers.iter().filter(|s| s.pool.pool_enabled) {
        let (stats, slots) = tokio::join!(state.control.stats(&server.id), state.control.slots(&server.id));
        let (Ok(stats), Ok(slots)) = (stats, slots) else {
            tracing::warn!(server_id = %server.id, "metrics: control plane unavailable");
            return None;
        };
        pools.push(PoolFigures {
            server,
            health_score: crate::http::admin::ops::health_score(&stats, server.endpoints.len()),
            stats,
            slots,
        });
    }
    Some(render_fleet(&pools, leader, chrono::Utc::now().timestamp_millis()))
}
