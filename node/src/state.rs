//! What every handler can reach: configuration, store, control plane, token key.

use std::sync::Arc;

use poolgate_shared::auth::JwtKey;
use poolgate_shared::config::Config;
use poolgate_shared::control::ControlPlane;
use poolgate_shared::store::Store;

/// Shared, cheap-to-clone application state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub control: ControlPlane,
    /// Verifies bearer tokens. Present even with `AUTH_REQUIRED=false` so that later features
    /// (session ids) can derive from one secret.
    pub jwt: JwtKey,
    /// Identifies this node in logs and per-node metrics.
    pub node_id: String,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
