//! `poolgate-coordinator`: the fleet's housekeeping process (distributed mode). Several replicas
//! run; one, elected through Redis with a fencing token, acts: it runs the cleanup loop (reclaim,
//! fenced recycling, closing removed upstream sessions). On SIGTERM it resigns so another replica
//! takes over at once. The embedded single node runs the same loops itself.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use poolgate_shared::config::{Config, Mode};
use poolgate_shared::control::{ControlPlane, Pools};
use poolgate_shared::housekeeping::{self, Cleanup, Leadership};
use poolgate_shared::store::Store;
use poolgate_shared::upstream::UpstreamClient;
use poolgate_shared::{shutdown, telemetry};

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
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    telemetry::log_config(&config);
    let store = Store::connect(&config.database.url, &config.database.kind)?;
    store.migrate_up().await.context("cannot apply database migrations")?;
    let control = ControlPlane::from_config(&config)?;
    if !matches!(control, ControlPlane::Redis(_)) {
        bail!("the coordinator needs the Redis control plane");
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".to_owned());
    let holder = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let leadership = Leadership::new(control.clone(), holder.clone(), housekeeping::timing(&config));
    let cleanup = Cleanup {
        pools: Pools::new(control.clone(), store.clone()),
        upstream: UpstreamClient::new()?,
        leadership: leadership.clone(),
        interval: config.pooling.manager.cleanup_interval,
        warmup: Some(housekeeping::WarmUp {
            pools: Pools::new(control.clone(), store.clone()),
            upstream: UpstreamClient::new()?,
            leadership: leadership.clone(),
            enabled: config.pooling.enabled,
        }),
        snapshots: Some(housekeeping::Snapshots::new(
            Pools::new(control.clone(), store.clone()),
            leadership.clone(),
            config.pooling.manager.cleanup_interval,
            config.pooling.manager.metrics_retention_days,
        )),
    };
    tracing::info!(%holder, "coordinator started; campaigning for leadership");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let elect = tokio::spawn(leadership.clone().run(wait(stopped.clone())));
    let health = housekeeping::HealthCheck {
        pools: Pools::new(control.clone(), store.clone()),
        upstream: UpstreamClient::new()?,
        leadership: leadership.clone(),
        interval: config.pooling.manager.health_check_interval,
    };
    let check = tokio::spawn(health.run(wait(stopped.clone())));
    let clean = tokio::spawn(cleanup.run(wait(stopped)));
    shutdown::signal().await;
    let _ = stop.send(true);
    // The election task resigns on its way out, so another replica can lead at once.
    let _ = elect.await;
    let _ = clean.await;
    let _ = check.await;
    control.close().await;
    store.close().await;
    tracing::info!(%holder, "coordinator stopped");
    Ok(())
}
