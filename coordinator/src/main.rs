//! `poolgate-coordinator`: the fleet's housekeeping process. Several replicas run; one, elected
//! through Redis with a fencing token, acts. For now it loads and validates the configuration,
//! applies migrations and waits for a stop signal — the leader election and the loops (cleanup,
//! warm-up, health, snapshots, retention, optimizer) plug in here with the coordinator issue.

use std::process::ExitCode;

use anyhow::Context as _;
use poolgate_shared::config::Config;
use poolgate_shared::store::Store;
use poolgate_shared::{shutdown, telemetry};

fn main() -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("poolgate-coordinator: {e}");
            return ExitCode::from(2);
        }
    };
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
    tracing::info!(mode = ?config.mode(), "coordinator started; waiting for a stop signal");
    shutdown::signal().await;
    store.close().await;
    Ok(())
}
