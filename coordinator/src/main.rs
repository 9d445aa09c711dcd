//! `poolgate-coordinator`: the fleet's housekeeping process (distributed mode). Several replicas
//! run; one, elected through Redis with a fencing token, acts: it runs the cleanup loop (reclaim,
//! fenced recycling, closing removed upstream sessions). On SIGTERM it resigns so another replica
//! takes over at once. The embedded single node runs the same loops itself.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::serve::ListenerExt as _;
use poolgate_control::slots::SlotClient;
use poolgate_control::{ControlPlane, Pools};
use poolgate_housekeeping::{self as housekeeping, Leadership};
use poolgate_shared::config::{Config, Mode};
use poolgate_shared::shutdown::Tracker;
use poolgate_shared::{shutdown, telemetry};
use poolgate_store::Store;

fn main() -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("poolgate-coordinator: {e}");
            return ExitCode::from(2);
        }
    };
    if config.mode() != Mode::Distributed {
        eprintln!(
            "poolgate-coordinator: needs REDIS_URL (distributed mode); the embedded node runs its own housekeeping"
        );
        return ExitCode::from(2);
    }
    telemetry::init_logging(&config.server.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("poolgate-coordinator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poolgate-coordinator: {e:#}");
            // A setting found unusable at start-up (e.g. POOL_AUDIT_LOG_PATH not writable).
            if e.downcast_ref::<poolgate_shared::config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    telemetry::log_config(&config);
    // The optimizer's auto-apply is audited here (actor `optimizer`): the coordinator writes the
    // audit file too; an unwritable one stops start-up (exit 2).
    let audit_file = poolgate_store::AuditFile::from_config(&config.pooling.audit)?;
    let store = Store::connect_with(&config.database.url, &config.database.kind, &config.database.pool)?
        .with_pool_defaults(config.pooling.defaults)
        .with_audit_file(audit_file);
    store.migrate_up().await.context("cannot apply database migrations")?;
    let control = ControlPlane::from_config(&config)?;
    if !matches!(control, ControlPlane::Redis(_)) {
        bail!("the coordinator needs the Redis control plane");
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".to_owned());
    let holder = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let leadership = Leadership::new(control.clone(), holder.clone(), housekeeping::timing(&config));
    let slots = SlotClient::from_config(
        Pools::new(control.clone(), store.clone()),
        &config,
        &holder,
        Arc::new(Tracker::default()),
    )?;
    tracing::info!(%holder, "coordinator started; campaigning for leadership");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let running = housekeeping::spawn(
        slots,
        leadership.clone(),
        housekeeping::Schedule::from_config(&config),
        stopped.clone(),
    );
    let addr = format!("{}:{}", config.server.host, config.server.coordinator_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (COORDINATOR_PORT)"))?;
    tracing::info!(addr = %listener.local_addr()?, "probes and metrics listening");
    let probes = Probes {
        leadership: leadership.clone(),
        control: control.clone(),
        store: store.clone(),
        node: host.clone(),
    };
    let router = probes.router();
    let http = tokio::spawn(async move {
        axum::serve(
            listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            router,
        )
        .with_graceful_shutdown(wait(stopped))
        .await
    });
    shutdown::signal().await;
    let _ = stop.send(true);
    // The election task resigns on its way out, so another replica can lead at once.
    running.join().await;
    let _ = http.await;
    control.close().await;
    store.close().await;
    tracing::info!(%holder, "coordinator stopped");
    Ok(())
}

/// `/health` (liveness), `/ready` (database and Redis answer) and `/metrics` of a coordinator.
#[derive(Clone)]
struct Probes {
    leadership: Leadership,
    control: ControlPlane,
    store: Store,
    node: String,
}

impl Probes {
    fn router(self) -> axum::Router {
        use axum::routing::get;
        axum::Router::new()
            .route(
                "/health",
                get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self)
    }
}

/// Longest a readiness check waits for one dependency.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn ready(
    axum::extract::State(p): axum::extract::State<Probes>,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let (db, redis) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, p.store.ping()),
        tokio::time::timeout(CHECK_TIMEOUT, p.control.ping()),
    );
    let mut causes = Vec::new();
    if !matches!(db, Ok(Ok(()))) {
        causes.push("database");
    }
    if !matches!(redis, Ok(Ok(()))) {
        causes.push("redis");
    }
    let status = if causes.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if causes.is_empty() { "ready" } else { "not_ready" },
        "causes": causes,
        "detail": {"holder": p.leadership.holder(), "leader_term": p.leadership.term()},
    });
    (status, axum::Json(body))
}

async fn metrics(axum::extract::State(p): axum::extract::State<Probes>) -> impl axum::response::IntoResponse {
    let leading = u8::from(p.leadership.term().is_some());
    let term = match p.control.leader().await {
        Ok(Some((_, term))) => term.to_string(),
        Ok(None) => "0".to_owned(),
        // Unknown: leave the series out rather than report a wrong term.
        Err(_) => String::new(),
    };
    let node = p.node.replace('\\', "\\\\").replace('"', "\\\"");
    let mut text = format!(
        "# HELP poolgate_coordinator_is_leader 1 while this coordinator acts as the fleet's leader\n\
         # TYPE poolgate_coordinator_is_leader gauge\npoolgate_coordinator_is_leader{{node=\"{node}\"}} {leading}\n"
    );
    if !term.is_empty() {
        text.push_str(&format!(
            "# HELP poolgate_leader_term The current leader's fencing token (0: none)\n\
             # TYPE poolgate_leader_term gauge\npoolgate_leader_term {term}\n"
        ));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
