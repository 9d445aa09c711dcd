//! Logging set-up shared by the binaries: `LOG_LEVEL` (or a full `RUST_LOG` filter) to stderr,
//! so that commands printing results on stdout (`poolgate-node token`) stay pipeable.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("{level},sqlx=warn,fred=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Logs the effective configuration once, secrets redacted.
pub fn log_config(config: &crate::config::Config) {
    for (key, value) in config.summary() {
        tracing::info!("config {key}={value}");
    }
    let names: Vec<String> = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).collect();
    for warning in crate::config::unread_settings(names.iter().map(String::as_str)) {
        tracing::warn!("{warning}");
    }
}
