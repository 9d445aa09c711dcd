//! Pool operations (seed 001 paths): `GET /api/servers/{id}/pool/stats`, `GET .../pool/sessions`
//! and `GET /api/servers/pools/health`. Figures are fleet-wide: they come from the control plane.
//!
//! Health score of a pool, in [0, 1], the product of five factors, each 1.0 when all is well:
//! - sessions: `1 − unhealthy / slots` (1.0 with no slots);
//! - timeouts: `1 − min(1, timeouts / max(1, acquisitions))`;
//! - the last health check: `1 − failed / pinged` (it pings idle sessions and probes endpoints
//!   without one, so an upstream that is down shows here even when the pool is empty);
//! - creations: `1 − min(1, creations failed in a row / 3)` (reset by the next created session);
//! - breakers: `1 − open breakers / endpoints`.
//!
//! A pool is degraded below 0.8;
//! `overall_health` is `healthy` with no degraded pool, `unhealthy` when a pool is below 0.5 or
//! the control plane is unreachable, else `degraded`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use poolgate_control::{BreakerState, ControlError, PoolStats};
use poolgate_shared::config::redact_credentials;
use poolgate_shared::domain::server::Server;

use super::ServerIdPath;
use crate::http::auth::Reader;
use crate::http::error::ApiError;
use crate::state::AppState;

pub const DEGRADED_BELOW: f64 = 0.8;
pub const UNHEALTHY_BELOW: f64 = 0.5;

fn control_unavailable(e: ControlError) -> ApiError {
    ApiError::unavailable("control plane", e)
}

/// Failed creations in a row that take the creation factor to 0.
const CREATE_FAILURES_UNHEALTHY: f64 = 3.0;

pub fn health_score(s: &PoolStats, endpoints: usize) -> f64 {
    let healthy = if s.slots == 0 {
        1.0
    } else {
        1.0 - s.unhealthy as f64 / s.slots as f64
    };
    let timeouts = (s.timeouts as f64 / (s.acquisitions.max(1)) as f64).min(1.0);
    let pings = if s.health_pinged == 0 {
        0.0
    } else {
        (s.health_failed as f64 / s.health_pinged as f64).min(1.0)
    };
    let creations = (s.create_failures as f64 / CREATE_FAILURES_UNHEALTHY).min(1.0);
    let open = (0..endpoints as u32)
        .filter(|i| s.breaker_state(*i) == BreakerState::Open)
        .count();
    let breakers = open as f64 / endpoints.max(1) as f64;
    (healthy * (1.0 - timeouts) * (1.0 - pings) * (1.0 - creations) * (1.0 - breakers)).clamp(0.0, 1.0)
}

/// Each endpoint's breaker (`closed`, `open`, `half_open`), endpoints named without secrets.
pub fn breakers(server: &Server, s: &PoolStats) -> Vec<Value> {
    server
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let state = match s.breaker_state(i as u32) {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            };
            json!({"endpoint": redact_credentials(&e.url), "state": state,
                "failures": s.breakers.get(&(i as u32)).map_or(0, |b| b.failures)})
        })
        .collect()
}

async fn stats_of(state: &AppState, server: &Server) -> Result<Value, ApiError> {
    let s = state.control.stats(&server.id).await.map_err(control_unavailable)?;
    let (pool_id, status) = state.store.pool_row(&server.id).await?.unwrap_or_default();
    let active = s.slots.saturating_sub(s.available + s.unhealthy);
    Ok(json!({
        "pool_id": pool_id,
        "server_id": server.id,
        "strategy": server.pool.pool_strategy,
        "status": status,
        "total_sessions": s.slots,
        "active_sessions": active,
        "available_sessions": s.available,
        "unhealthy_sessions": s.unhealthy,
        "min_size": server.pool.pool_min_size,
        "max_size": server.pool.pool_max_size,
        "total_acquisitions": s.acquisitions,
        "total_releases": s.releases,
        "total_timeouts": s.timeouts,
        "total_creates": s.creates,
        "total_destroys": s.destroys,
        // poolgate's own
        "isolation": server.pool.pool_isolation,
        "reservations": s.reservations,
        "leases": s.leases,
        "bindings": s.bindings,
        "draining_sessions": s.draining,
        "rebinds": s.rebinds,
        "errors": s.errors,
        "expired_leases": s.expired,
        "health_score": health_score(&s, server.endpoints.len()),
        // What the control plane enforces (the database's values above are what it converges to
        // within POOL_MANAGER_RECONCILE_INTERVAL).
        "enforced_max_size": s.max_size,
        "enforced_enabled": s.enabled,
        "create_failures": s.create_failures,
        "circuit_breakers": breakers(server, &s),
    }))
}

pub async fn stats(
    State(state): State<AppState>,
    Reader(_): Reader,
    ServerIdPath(id): ServerIdPath,
) -> Result<Json<Value>, ApiError> {
    let server = super::load_server(&state, &id).await?;
    Ok(Json(stats_of(&state, &server).await?))
}

pub async fn sessions(
    State(state): State<AppState>,
    Reader(_): Reader,
    ServerIdPath(id): ServerIdPath,
) -> Result<Json<Value>, ApiError> {
    let server = super::load_server(&state, &id).await?;
    let slots = state.control.slots(&server.id).await.map_err(control_unavailable)?;
    // The upstream session id is not shown: with the server's credentials it would address the
    // session directly.
    let list: Vec<Value> = slots
        .iter()
        .map(|s| {
            json!({
                "slot_id": s.id,
                "state": s.state,
                "endpoint": s.meta.endpoint.as_deref().map(redact_credentials),
                "protocol_version": s.meta.protocol_version,
                "active_leases": s.leases,
                "bindings": s.bindings,
                "reuse_count": s.reuse_count,
                "created_at_ms": s.created_ms,
                "last_used_ms": s.last_used_ms,
                "latency_ewma_ms": s.latency_ewma_ms,
                "error_rate": s.error_rate,
            })
        })
        .collect();
    Ok(Json(json!({"server_id": server.id, "sessions": list})))
}

/// `GET /api/servers/{id}/health` (seed 000's troubleshooting page): the server's endpoints with
/// their breakers, its pool's health score and status, and the last health check.
pub async fn server_health(
    State(state): State<AppState>,
    Reader(_): Reader,
    ServerIdPath(id): ServerIdPath,
) -> Result<Json<Value>, ApiError> {
    let server = super::load_server(&state, &id).await?;
    let s = state.control.stats(&server.id).await.map_err(control_unavailable)?;
    let score = health_score(&s, server.endpoints.len());
    let status = if score < UNHEALTHY_BELOW {
        "unhealthy"
    } else if score < DEGRADED_BELOW {
        "degraded"
    } else {
        "healthy"
    };
    Ok(Json(json!({
        "server_id": server.id,
        "status": status,
        "health_score": score,
        "pool_enabled": server.pool.pool_enabled,
        "endpoints": breakers(&server, &s),
        "last_health_check": {"checked": s.health_pinged, "failed": s.health_failed},
        "create_failures": s.create_failures,
        "total_sessions": s.slots,
        "unhealthy_sessions": s.unhealthy,
    })))
}

pub async fn health(State(state): State<AppState>, Reader(_): Reader) -> Result<Json<Value>, ApiError> {
    let servers = state.store.list_servers().await?;
    let mut pools = Vec::new();
    let mut degraded = 0;
    let mut worst = 1.0f64;
    let mut reachable = true;
    for server in servers.iter().filter(|s| s.pool.pool_enabled) {
        match state.control.stats(&server.id).await {
            Ok(s) => {
                let score = health_score(&s, server.endpoints.len());
                if score < DEGRADED_BELOW {
                    degraded += 1;
                }
                worst = worst.min(score);
                pools.push(json!({"server_id": server.id, "health_score": score,
                    "total_sessions": s.slots, "unhealthy_sessions": s.unhealthy,
                    "failed_probes": s.health_failed, "create_failures": s.create_failures,
                    "circuit_breakers": breakers(server, &s)}));
            }
            Err(e) => {
                reachable = false;
                tracing::warn!(server_id = %server.id, error = %e, "pool health: stats unavailable");
            }
        }
    }
    let overall = if !reachable || worst < UNHEALTHY_BELOW {
        "unhealthy"
    } else if degraded > 0 {
        "degraded"
    } else {
        "healthy"
    };
    Ok(Json(
        json!({"overall_health": overall, "degraded_pools": degraded, "pools": pools}),
    ))
}

/// `POST /api/servers/{id}/pool/drain {"timeout": s}` body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    #[serde(default)]
    timeout: Option<u64>,
}

/// Longest drain wait accepted.
pub const MAX_DRAIN_SECONDS: u64 = 3600;

/// Marks every slot draining (no new leases or bindings; bound clients finish), then waits up to
/// `timeout` seconds for active leases to end, woken by releases. Reports what was left.
pub async fn drain(
    State(state): State<AppState>,
    crate::http::auth::Admin(caller): crate::http::auth::Admin,
    ServerIdPath(id): ServerIdPath,
    crate::http::json::ApiJson(body): crate::http::json::ApiJson<DrainRequest>,
) -> Result<Json<Value>, ApiError> {
    let server = super::load_server(&state, &id).await?;
    let timeout = body.timeout.unwrap_or(30);
    if timeout > MAX_DRAIN_SECONDS {
        return Err(ApiError::validation(poolgate_shared::domain::pool::FieldError::new(
            "timeout",
            format!("must be between 0 and {MAX_DRAIN_SECONDS} seconds (got {timeout})"),
        )));
    }
    let mut changes = state.control.changes(&server.id).await.map_err(control_unavailable)?;
    audited(
        &state,
        &server,
        &caller.subject,
        "pool.drain",
        move |state, server| async move {
            let marked = mark_draining(&state, &server).await.map_err(control_unavailable)?;
            Ok(json!({"marked_draining": marked, "timeout": timeout}))
        },
    )
    .await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let left = loop {
        let s = state.control.stats(&server.id).await.map_err(control_unavailable)?;
        if s.leases == 0 || tokio::time::Instant::now() >= deadline {
            break s;
        }
        let nap = (deadline - tokio::time::Instant::now()).min(poolgate_control::WAIT_RECHECK);
        let _ = tokio::time::timeout(nap, changes.changed()).await;
    };
    tracing::info!(server_id = %id, actor = %caller.subject, active = left.leases, "pool drained");
    Ok(Json(json!({
        "server_id": id,
        "drained": left.leases == 0,
        "active_leases": left.leases,
        "remaining_sessions": left.slots,
        "bound_sessions": left.bindings,
    })))
}

/// Retires every slot (idle ones are closed at once, busy ones when their lease ends); warm-up
/// then recreates `pool_min_size` fresh sessions.
pub async fn reset(
    State(state): State<AppState>,
    crate::http::auth::Admin(caller): crate::http::auth::Admin,
    ServerIdPath(id): ServerIdPath,
) -> Result<Json<Value>, ApiError> {
    let server = super::load_server(&state, &id).await?;
    let done = audited(
        &state,
        &server,
        &caller.subject,
        "pool.reset",
        |state, server| async move {
            let slots = state.control.slots(&server.id).await.map_err(control_unavailable)?;
            let mut closed = 0;
            for slot in &slots {
                let changed = state
                    .control
                    .mark(&server.id, &slot.id, poolgate_control::SlotState::Retired)
                    .await
                    .map_err(control_unavailable)?;
                closed += changed.closed.len();
                close_now(&state, &server, changed.closed).await;
            }
            Ok(json!({"retired": slots.len(), "closed": closed}))
        },
    )
    .await?;
    tracing::info!(server_id = %id, actor = %caller.subject, retired = %done["retired"], "pool reset");
    Ok(Json(
        json!({"server_id": id, "retired": done["retired"], "closed": done["closed"]}),
    ))
}

/// A pool's figures, as the audit rows of a drain or reset record them before and after.
fn figures(s: &PoolStats) -> Value {
    json!({
        "total_sessions": s.slots,
        "available_sessions": s.available,
        "draining_sessions": s.draining,
        "unhealthy_sessions": s.unhealthy,
        "active_leases": s.leases,
        "bindings": s.bindings,
    })
}

/// Runs `op` (a pool operation on the control plane) and writes its audit row (`action`, actor
/// `actor`): `before` the pool's figures, `after` its figures afterwards with what `op` reports.
/// Both run in a task of their own, so a caller that goes away cannot leave a change without
/// its row. Returns what `op` reported.
async fn audited<F, Fut>(
    state: &AppState,
    server: &Server,
    actor: &str,
    action: &'static str,
    op: F,
) -> Result<Value, ApiError>
where
    F: FnOnce(AppState, Server) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Value, ApiError>> + Send,
{
    let (state, server, actor) = (state.clone(), server.clone(), actor.to_owned());
    tokio::spawn(async move {
        let before = state.control.stats(&server.id).await.map_err(control_unavailable)?;
        let report = op(state.clone(), server.clone()).await?;
        // The change is made: a failure to read the figures now only thins the row.
        let mut after = match state.control.stats(&server.id).await {
            Ok(s) => figures(&s),
            Err(_) => json!({}),
        };
        if let (Some(after), Some(report)) = (after.as_object_mut(), report.as_object()) {
            after.extend(report.clone());
        }
        state
            .store
            .record_audit(&actor, action, Some(&server.id), Some(&figures(&before)), Some(&after))
            .await?;
        Ok(report)
    })
    .await
    .map_err(|e| ApiError::internal(format!("{action} failed: {e}")))?
}

/// Marks every slot of the pool draining: no new leases or bindings; idle unbound sessions close
/// at once, bound ones when their client session ends, busy ones when their lease ends. Also what
/// disabling a pool does (gracefully: nobody's request is cut).
pub async fn mark_draining(state: &AppState, server: &Server) -> Result<usize, ControlError> {
    let slots = state.control.slots(&server.id).await?;
    let mut marked = 0;
    for slot in slots.iter().filter(|s| s.state == poolgate_control::SlotState::Ready) {
        let changed = state
            .control
            .mark(&server.id, &slot.id, poolgate_control::SlotState::Draining)
            .await?;
        marked += 1;
        close_now(state, server, changed.closed).await;
    }
    Ok(marked)
}

async fn close_now(state: &AppState, server: &Server, closed: Vec<poolgate_control::SlotRecord>) {
    poolgate_control::slots::close_removed(&state.upstream, Some(server), &closed).await;
}

/// `GET /api/servers/{id}/pool/optimize`: the optimizer's recommendation for this pool, with its
/// reasons, the fitted workload and the simulated figures per strategy (see
/// `poolgate_housekeeping::optimizer`). Reading it changes nothing; `pool_auto_optimize` lets the
/// coordinator apply it (with hysteresis, audited).
pub async fn optimize(
    State(state): State<AppState>,
    Reader(_): Reader,
    ServerIdPath(id): ServerIdPath,
) -> Result<Json<Value>, ApiError> {
    use poolgate_housekeeping::optimizer;
    let server = super::load_server(&state, &id).await?;
    let history = state
        .store
        .list_snapshots(server.id.as_str(), optimizer::HISTORY_ROWS)
        .await?;
    let (pool, current, shape) = (
        server.id.to_string(),
        server.pool.pool_strategy,
        optimizer::shape_for(&server),
    );
    let now = poolgate_shared::domain::now();
    // Simulations take milliseconds to tenths of a second: off the async workers.
    let rec = tokio::task::spawn_blocking(move || {
        optimizer::recommend(&pool, &history, current, &shape, now, &optimizer::Settings::default())
    })
    .await
    .map_err(|e| ApiError::internal(format!("optimizer failed: {e}")))?;
    let mut body = serde_json::to_value(&rec).map_err(|e| ApiError::internal(format!("optimizer result: {e}")))?;
    if let Some(map) = body.as_object_mut() {
        map.insert("server_id".into(), json!(server.id));
        map.insert("auto_optimize".into(), json!(server.pool.pool_auto_optimize));
    }
    Ok(Json(body))
}
