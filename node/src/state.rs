//! What every handler can reach: configuration, store, control plane, token and session keys,
//! the upstream client and a short-lived cache of server definitions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::session_id::SessionCodec;
use poolgate_control::slots::SlotClient;
use poolgate_control::ControlPlane;
use poolgate_shared::auth::JwtKey;
use poolgate_shared::config::Config;
use poolgate_shared::domain::server::{Server, ServerId};
use poolgate_store::{Store, StoreError};
use poolgate_upstream::UpstreamClient;

/// How long a server definition is served from memory before it is read again. The database is
/// not on the MCP hot path: configuration changes reach the data plane within this delay.
pub const SERVER_CACHE_TTL: Duration = Duration::from_secs(5);

/// Shared, cheap-to-clone application state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub control: ControlPlane,
    /// Verifies bearer tokens.
    pub jwt: JwtKey,
    /// Encrypts client session ids.
    pub sessions: SessionCodec,
    pub upstream: UpstreamClient,
    pub servers: ServerCache,
    /// Requests in flight on this node (any isolation), by "client scope|client id", with the
    /// upstream session and the rewritten id they went under — where a cancellation must go.
    pub shared_calls: Mutex<HashMap<String, (poolgate_upstream::SessionTarget, serde_json::Value)>>,
    /// Client sessions with their GET stream open on this node (one each).
    pub streams: Mutex<HashSet<String>>,
    /// Turns true when the node starts stopping: open GET streams end at once.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// JSON-RPC ids in flight per client session on this node (I9: a reused id is refused).
    pub inflight: Mutex<HashMap<String, HashSet<String>>>,
    /// The pool client: leases, upstream sessions, upstream profiles (one home, shared with the
    /// embedded node's warm-up).
    pub slots: SlotClient,
    /// When this node last refreshed each binding's idle TTL (touches are amortized).
    pub touched: Mutex<HashMap<String, Instant>>,
    /// Shared isolation: each user's last slot per server (`server|user` -> slot id), so releases
    /// can report whether users return to their slot (the optimizer's evidence for sticky).
    /// Node-local and bounded by [`AFFINITY_MEMORY`].
    pub last_slot: Mutex<HashMap<String, String>>,
    /// Prometheus metrics (`/metrics`).
    pub metrics: crate::metrics::NodeMetrics,
    /// Set once on SIGTERM: `/ready` answers 503 and new requests are refused.
    pub draining: std::sync::atomic::AtomicBool,
    /// Client requests in flight (until their response body is sent), for graceful shutdown.
    pub requests: Arc<crate::drain::Tracker>,
    /// Lease releases not yet confirmed by the control plane.
    pub releases: Arc<crate::drain::Tracker>,
    /// Identifies this node in logs and per-node metrics.
    pub node_id: String,
    /// Embedded mode: this node runs the housekeeping itself (it always leads).
    pub leadership: Option<poolgate_housekeeping::Leadership>,
}

/// Users remembered per node for affinity reports; past it the memory starts over.
pub const AFFINITY_MEMORY: usize = 100_000;

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    /// The user per-user quotas and rate limits count for a caller: `None` when tokens are not
    /// required (every caller is then `anonymous`, one "user" that must not be limited as one).
    pub fn quota_user(&self, subject: &str) -> Option<String> {
        self.config
            .auth
            .required
            .then(|| poolgate_control::slots::binding_key::quota_user(subject))
    }

    /// A lease for a client request, counting refusals by quota or rate limit on `/metrics`.
    pub async fn lease(
        &self,
        server: &std::sync::Arc<Server>,
        req: poolgate_control::slots::LeaseRequest<'_>,
    ) -> Result<poolgate_control::slots::LeaseGuard, poolgate_control::slots::SlotError> {
        use poolgate_control::slots::SlotError;
        use poolgate_control::ControlError;
        let leased = self.slots.lease(server, req).await;
        let reason = match &leased {
            Err(SlotError::Control(ControlError::RateLimited { .. })) => Some("rate_limited"),
            Err(SlotError::Control(ControlError::Overloaded { .. })) => Some("shed"),
            Err(SlotError::Control(ControlError::OverQuota { quota, .. })) => Some(match quota {
                poolgate_control::QuotaKind::Sessions => "quota_sessions",
                poolgate_control::QuotaKind::Inflight => "quota_inflight",
            }),
            _ => None,
        };
        if let Some(reason) = reason {
            self.metrics.refused(server.id.as_str(), reason);
        }
        leased
    }

    /// Whether `user` is back on the slot of its previous request to `server` (and remembers it).
    pub fn note_affinity(&self, server: &ServerId, user: &str, slot: &str) -> poolgate_control::Affinity {
        use poolgate_control::Affinity;
        let Ok(mut m) = self.last_slot.lock() else {
            return Affinity::None;
        };
        if m.len() >= AFFINITY_MEMORY {
            m.clear();
        }
        match m.insert(format!("{server}|{user}"), slot.to_owned()) {
            None => Affinity::New,
            Some(prev) if prev == slot => Affinity::Hit,
            Some(_) => Affinity::Miss,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A cached lookup: when it was read, and the server (or its absence).
type CachedServer = (Instant, Option<Arc<Server>>);

/// Server definitions cached for [`SERVER_CACHE_TTL`].
#[derive(Default)]
pub struct ServerCache {
    entries: Mutex<HashMap<ServerId, CachedServer>>,
}

impl ServerCache {
    pub async fn get(&self, store: &Store, id: &ServerId) -> Result<Option<Arc<Server>>, StoreError> {
        if let Ok(map) = self.entries.lock() {
            if let Some((at, server)) = map.get(id) {
                if at.elapsed() < SERVER_CACHE_TTL {
                    return Ok(server.clone());
                }
            }
        }
        let server = store.get_server(id).await?.map(Arc::new);
        if let Ok(mut map) = self.entries.lock() {
            map.insert(id.clone(), (Instant::now(), server.clone()));
        }
        Ok(server)
    }

    /// Forgets a server after an admin change on this node.
    pub fn invalidate(&self, id: &ServerId) {
        if let Ok(mut map) = self.entries.lock() {
            map.remove(id);
        }
    }
}
