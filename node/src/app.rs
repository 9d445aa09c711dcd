//! Wiring: configuration → store (migrated) → token key → control plane → router → listener.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::session_id::SessionCodec;
use poolgate_control::slots::SlotClient;
use poolgate_control::{ControlPlane, Pools};
use poolgate_housekeeping as housekeeping;
use poolgate_shared::auth::{generate_secret, JwtKey};
use poolgate_shared::config::{Config, Mode};
use poolgate_shared::shutdown::Tracker;
use poolgate_store::{Store, GENERATED_JWT_SECRET};

use crate::state::{AppState, Inner, ServerCache};

/// Opens the store, applies migrations, and returns it with the secret: the configured
/// `JWT_SECRET_KEY`, or in embedded mode one generated once and kept in the database.
pub async fn open_store(config: &Config) -> anyhow::Result<(Store, String)> {
    let store = Store::connect_with(&config.database.url, &config.database.kind, &config.database.pool)?
        .with_pool_defaults(config.pooling.defaults);
    store.migrate_up().await.context("cannot apply database migrations")?;
    let key = match (&config.auth.jwt_secret_key, config.mode()) {
        (Some(secret), _) => secret.expose().to_owned(),
        (None, Mode::Embedded) => {
            let fresh = generate_secret().context("cannot generate a JWT secret")?;
            store.setting_get_or_init(GENERATED_JWT_SECRET, || fresh).await?
        }
        // Config::validate refuses distributed mode without a secret.
        (None, Mode::Distributed) => anyhow::bail!("JWT_SECRET_KEY is required in distributed mode"),
    };
    Ok((store, key))
}

/// The bearer-token key: `JWT_SECRET_KEY` (or the embedded node's generated secret), the former
/// secrets of `JWT_SECRET_KEY_FALLBACKS`, and the `iss`/`aud` tokens must carry when configured.
pub fn jwt_key(config: &Config, secret: &str) -> JwtKey {
    let fallbacks: Vec<&[u8]> = config
        .auth
        .jwt_secret_key_fallbacks
        .iter()
        .map(|s| s.expose().as_bytes())
        .collect();
    JwtKey::new(secret.as_bytes())
        .expecting(config.auth.jwt_issuer.as_deref(), config.auth.jwt_audience.as_deref())
        .with_fallbacks(&fallbacks)
}

/// Everything a running node holds.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    // The audit file first: an operator who enabled it learns at once that it cannot be written
    // (a `ConfigError` naming POOL_AUDIT_LOG_PATH: exit 2).
    let audit_file = poolgate_store::AuditFile::from_config(&config.pooling.audit)?;
    let (store, secret) = open_store(&config).await?;
    // Every clone made from here on (the API's, the pools', the embedded housekeeping's) writes
    // the committed audit rows to the file.
    let store = store.with_audit_file(audit_file);
    let jwt = jwt_key(&config, &secret);
    let fallbacks: Vec<&[u8]> = config
        .auth
        .session_secret_fallbacks
        .iter()
        .map(|s| s.expose().as_bytes())
        .collect();
    let sessions = SessionCodec::new(secret.as_bytes(), &fallbacks);
    if config.auth.jwt_secret_key.is_none() && config.auth.required {
        tracing::warn!(
            "JWT_SECRET_KEY is not set: using a secret generated for this embedded node and kept in its database. \
             Mint an admin token with: poolgate-node token --sub <your-name> --role admin"
        );
    }
    let control = ControlPlane::from_config(&config)?;
    let node_id = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let pools = Pools::new(control.clone(), store.clone());
    let releases = std::sync::Arc::new(Tracker::default());
    let slots = SlotClient::from_config(pools, &config, &node_id, releases.clone())?;
    let upstream = slots.upstream().clone();
    let leadership = (config.mode() == Mode::Embedded)
        .then(|| housekeeping::Leadership::new(control.clone(), node_id.clone(), housekeeping::timing(&config)));
    Ok(AppState::new(Inner {
        config,
        store,
        control,
        jwt,
        sessions,
        upstream,
        servers: ServerCache::default(),
        inflight: Default::default(),
        streams: Default::default(),
        stopping: tokio::sync::watch::channel(false).0,
        shared_calls: Default::default(),
        slots,
        touched: Default::default(),
        last_slot: Default::default(),
        metrics: crate::metrics::NodeMetrics::new(&node_id).context("cannot register metrics")?,
        draining: Default::default(),
        requests: Default::default(),
        releases,
        node_id,
        leadership,
    }))
}

/// A node bound to its port and ready to serve.
pub struct Node {
    pub state: AppState,
    listener: TcpListener,
}

impl Node {
    pub async fn bind(config: Config) -> anyhow::Result<Node> {
        let addr = format!("{}:{}", config.server.host, config.server.port);
        let state = build_state(config).await?;
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Node { state, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = self.state.clone();
        let router = crate::http::router(self.state);
        tracing::info!(
            addr = %self.listener.local_addr()?,
            node_id = %state.node_id,
            mode = ?state.config.mode(),
            control_plane = state.control.backend(),
            "poolgate node listening"
        );
        // Embedded mode: the node runs the coordinator's loops itself.
        let (stop_housekeeping, housekeeping_stopped) = tokio::sync::watch::channel(false);
        let housekeeping = state.leadership.clone().map(|leadership| {
            housekeeping::spawn(
                state.slots.clone(),
                leadership,
                housekeeping::Schedule::from_config(&state.config),
                housekeeping_stopped,
            )
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = crate::connections::Limits::from_config(&state.config.server);
        let mut server = tokio::spawn(crate::connections::serve(
            self.listener,
            router,
            limits,
            state.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        tokio::select! {
            served = &mut server => {
                // The listener failed before any shutdown was asked for.
                served.context("server task")??;
            }
            () = shutdown => {
                drain(&state, server, stop).await;
            }
        }
        let _ = stop_housekeeping.send(true);
        if let Some(running) = housekeeping {
            running.join().await;
        }
        state.control.close().await;
        state.store.close().await;
        Ok(())
    }
}

/// SIGTERM: refuse new requests and turn `/ready` 503 at once, let what runs finish within the
/// grace period, stop serving, and wait (briefly) for lease releases to reach the control plane.
async fn drain(
    state: &AppState,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
) {
    let grace = state.config.server.shutdown_grace;
    state.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    state.stopping.send_replace(true);
    state.metrics.draining.set(1);
    tracing::info!(
        in_flight = state.requests.in_flight(),
        grace_seconds = grace.as_secs(),
        "draining: /ready is 503 and new requests are refused; in-flight requests may finish"
    );
    let left = state.requests.wait_idle(grace).await;
    if left > 0 {
        tracing::warn!(cut = left, "grace period over: cutting the requests still running");
    }
    let _ = stop.send(());
    // Idle keep-alive connections close at once; whatever still runs was past the grace period.
    let abort = server.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(1), server)
        .await
        .is_err()
    {
        abort.abort();
    }
    let unreleased = state.releases.wait_idle(RELEASE_WAIT).await;
    if unreleased > 0 {
        tracing::warn!(unreleased, "leases not released in time; they expire by their TTL");
    }
    tracing::info!("drained");
}

/// How long a stopping node waits for its last lease releases to be confirmed.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
