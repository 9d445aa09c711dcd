//! The pool client: the one home of a slot's life as a node or the leader sees it.
//!
//! [`SlotClient`] holds the control plane (through [`Pools`], which rebuilds a pool the control
//! plane lost), the upstream MCP client and a per-process cache of upstream [`Profiles`]. It is
//! the only code that
//! - takes a lease ([`SlotClient::lease`]): acquire, rebuild from the store, create the slot's
//!   upstream session when the pool hands out a reservation, commit or abort, pre-ping a warm
//!   session, and hand back a [`LeaseGuard`] that releases exactly once;
//! - opens an upstream session ([`SlotClient::open_session`]): `server/discover` first (a
//!   2026-07-28 server needs no handshake; its slot stores the discovery translated into the
//!   `initialize` result session-era clients expect), else the `initialize` handshake — used by
//!   the node for slots it creates on demand and by the leader's warm-up alike;
//! - closes the upstream sessions of slots that left the pool ([`close_removed`]).
//!
//! The HTTP layer translates MCP to and from these calls; the leader's loops use them too.
//!
//! # Layout
//! - `mod.rs`: [`SlotClient`], [`LeaseRequest`], [`SlotError`], [`close_removed`].
//! - `guard.rs`: [`LeaseGuard`] (one release per lease, retire before it goes out).
//! - `profile.rs`: [`Profiles`] (discovery per endpoint, initialize result per server) and
//!   [`init_from_discovery`].
//! - `admission.rs`: [`Admission`] (a bounded, FIFO wait for leases on any slot).

mod admission;
mod guard;
mod profile;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use admission::{Admission, Decision};
pub use guard::LeaseGuard;
pub use profile::{init_from_discovery, Profiles, DISCOVERY_TTL, SERVER_INFO_META};

use crate::{
    AcquireRequest, Acquired, Breaker, Committed, ControlError, ControlPlane, EndpointOutcome, Outcome, Pools,
    Reservation, SlotMeta, SlotRecord, SlotState,
};
use poolgate_shared::config::{keys, Config, ConfigError};
use poolgate_shared::domain::server::{Server, ServerId};
use poolgate_shared::shutdown::Tracker;
use poolgate_upstream::{
    Limits, SessionTarget, Tls, TlsError, UpstreamClient, UpstreamError, LATEST_SESSION_VERSION, SESSION_VERSIONS,
    STATELESS_VERSION,
};

/// The upstream client with the configured limits (`UPSTREAM_MAX_*`, `UPSTREAM_REQUEST_TIMEOUT`)
/// and upstream TLS (`POOL_TLS_*`: extra CAs, a client certificate). The TLS files are read here,
/// once, at start-up: a file that is missing, unreadable or not the PEM it should be is a
/// [`ConfigError`] naming the key and the file (exit 2).
pub fn upstream_client(config: &Config) -> Result<UpstreamClient, ConfigError> {
    let settings = &config.upstream.tls;
    let mut tls = Tls::default();
    if let Some(ca) = settings.ca() {
        let pem = read_tls_file(&keys::POOL_TLS_CA_PATH, ca)?;
        let n = tls
            .add_roots_pem(&pem)
            .map_err(|e| tls_error(&keys::POOL_TLS_CA_PATH, ca, e))?;
        tracing::info!(path = %ca.display(), certificates = n, "upstream TLS: trusting extra CA certificates besides the web roots");
    }
    if let Some((cert, key)) = settings.identity() {
        let chain = read_tls_file(&keys::POOL_TLS_CERT_PATH, cert)?;
        let key_pem = read_tls_file(&keys::POOL_TLS_KEY_PATH, key)?;
        tls.set_identity_pem(&chain, &key_pem).map_err(|e| match e {
            TlsError::Certificate(_) => tls_error(&keys::POOL_TLS_CERT_PATH, cert, e),
            TlsError::Roots(_) | TlsError::Key(_) => tls_error(&keys::POOL_TLS_KEY_PATH, key, e),
        })?;
        tracing::info!(path = %cert.display(), "upstream TLS: presenting a client certificate to upstreams that ask for one");
    }
    let limits = Limits {
        max_response_bytes: config.upstream.max_response_bytes,
        max_event_bytes: config.upstream.max_event_bytes,
        request_timeout: config.upstream.request_timeout,
    };
    // Every part was checked on its own above; a failure here is the TLS setup as a whole.
    UpstreamClient::with_tls(limits, tls).map_err(|e| ConfigError::Invalid {
        key: keys::POOL_TLS_ENABLED.env.to_owned(),
        rule: format!("the upstream HTTPS client cannot be built with these TLS settings: {e}"),
    })
}

fn read_tls_file(key: &keys::Key, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Invalid {
        key: key.env.to_owned(),
        rule: format!(
            "cannot read {}: {e} (POOL_TLS_ENABLED is true: fix the path or its permissions, or disable upstream TLS)",
            path.display()
        ),
    })
}

fn tls_error(key: &keys::Key, path: &std::path::Path, e: TlsError) -> ConfigError {
    ConfigError::Invalid {
        key: key.env.to_owned(),
        rule: format!("{}: {e}", path.display()),
    }
}

/// Binding keys of 2026-07-28 clients start with this: `user:<subject>:<server>`.
pub const USER_KEY_PREFIX: &str = "user:";

/// Binding keys, one form per use, each with its own tag: `user:<subject>:<server>` (a
/// 2026-07-28 client's user), `sticky:<subject>:<server>` (the sticky strategy's user),
/// `session:<subject>:<server>:<nonce>` (one client session). The subject comes from a token, so
/// it is escaped (`%` → `%25`, `:` → `%3A`): no subject can spell another subject's key or a key
/// of another form (a subject `user:bob` must not take bob's binding).
pub mod binding_key {
    use poolgate_shared::domain::server::ServerId;

    fn escape(subject: &str) -> String {
        subject.replace('%', "%25").replace(':', "%3A")
    }

    /// The user id per-user quotas and rate limits count (the escaped subject, as inside a
    /// session key, so the control plane can tell whose a client session is).
    pub fn quota_user(subject: &str) -> String {
        escape(subject)
    }

    pub fn user(subject: &str, server: &ServerId) -> String {
        format!("{}{}:{server}", super::USER_KEY_PREFIX, escape(subject))
    }

    pub fn sticky(subject: &str, server: &ServerId) -> String {
        format!("sticky:{}:{server}", escape(subject))
    }

    /// A new client session's key (a fresh nonce each call).
    pub fn session(subject: &str, server: &ServerId) -> String {
        format!("session:{}:{server}:{}", escape(subject), uuid::Uuid::new_v4().simple())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn no_subject_spells_another_key() {
            let srv = ServerId::parse("srv").expect("id");
            // A subject shaped like another form, or like another subject plus a server.
            assert_ne!(sticky("user:bob", &srv), user("bob", &srv));
            assert_ne!(user("a:b", &srv), user("a%3Ab", &srv));
            assert_ne!(sticky("a%", &srv), sticky("a%25", &srv));
            assert_eq!(user("a:b%", &srv), "user:a%3Ab%25:srv");
            let key = session("x:y", &srv);
            assert!(key.starts_with("session:x%3Ay:srv:"), "{key}");
            assert_eq!(key.matches(':').count(), 3, "{key}");
        }
    }
}

/// Why no lease could be had.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Creating the slot's upstream session failed.
    #[error("upstream MCP server failed: {0}")]
    Upstream(#[from] UpstreamError),
    /// The reservation named an endpoint the server no longer has.
    #[error("endpoint list changed; retry")]
    EndpointsChanged,
    /// The new slot joined the pool but the binding it was created for changed meanwhile.
    #[error("binding changed; retry")]
    BindingChanged,
}

/// What a caller wants of [`SlotClient::lease`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LeaseRequest<'a> {
    /// The binding key (a client session, a user), if the lease goes to a bound slot.
    pub key: Option<&'a str>,
    /// The protocol version the client asked for (a new upstream session is opened with it).
    pub version: Option<&'a str>,
    /// Ping a warm session older than the pre-ping window before handing it out
    /// (`pool_pre_ping`); a dead one is retired and another tried once.
    pub pre_ping: bool,
    /// The user per-user quotas and the rate limit count ([`binding_key::quota_user`]); `None`
    /// for anonymous callers.
    pub user: Option<&'a str>,
}

/// The pool client. Cheap to clone. See the module doc.
#[derive(Clone)]
pub struct SlotClient(Arc<Inner>);

struct Inner {
    pools: Pools,
    upstream: UpstreamClient,
    profiles: Profiles,
    /// Who holds the leases this client takes (node id, for diagnostics).
    holder: String,
    /// A slot used successfully this recently skips the pre-ping (`POOL_PRE_PING_WINDOW`).
    pre_ping_window: Duration,
    /// Background lease releases not yet confirmed (a stopping node waits for them).
    releases: Arc<Tracker>,
    /// When endpoints' circuit breakers open.
    breaker: Breaker,
    /// Per pool: this node's admission of unbound leases (see `admission.rs`).
    admission: std::sync::Mutex<std::collections::HashMap<ServerId, Arc<Admission>>>,
}

impl SlotClient {
    pub fn new(
        pools: Pools,
        upstream: UpstreamClient,
        holder: &str,
        pre_ping_window: Duration,
        releases: Arc<Tracker>,
        breaker: Breaker,
    ) -> SlotClient {
        SlotClient(Arc::new(Inner {
            pools,
            upstream,
            profiles: Profiles::default(),
            holder: holder.to_owned(),
            pre_ping_window,
            releases,
            breaker,
            admission: Default::default(),
        }))
    }

    /// This node's admission state of `pool`.
    pub fn admission(&self, pool: &ServerId) -> Arc<Admission> {
        let Ok(mut all) = self.0.admission.lock() else {
            return Arc::new(Admission::default());
        };
        Arc::clone(all.entry(pool.clone()).or_default())
    }

    /// The pool client a process builds from its configuration: the upstream client with the
    /// configured limits and TLS ([`upstream_client`]), the pre-ping window and the breakers.
    pub fn from_config(
        pools: Pools,
        config: &Config,
        holder: &str,
        releases: Arc<Tracker>,
    ) -> Result<SlotClient, ConfigError> {
        Ok(SlotClient::new(
            pools,
            upstream_client(config)?,
            holder,
            config.pooling.pre_ping_window,
            releases,
            Breaker::from_config(config),
        ))
    }

    pub fn breaker(&self) -> Breaker {
        self.0.breaker
    }

    /// Records an outcome at endpoint `ep` of `server` for its breaker (logged when it opens).
    pub async fn note_endpoint(&self, server: &ServerId, ep: u32, outcome: EndpointOutcome) {
        match self.control().breaker(server, ep, outcome, self.0.breaker).await {
            Ok(crate::BreakerState::Open) => {
                tracing::warn!(server_id = %server, endpoint = ep, "circuit breaker open: no new upstream sessions at this endpoint for now");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(server_id = %server, error = %e, "recording an endpoint outcome failed"),
        }
    }

    pub fn pools(&self) -> &Pools {
        &self.0.pools
    }

    pub fn control(&self) -> &ControlPlane {
        &self.0.pools.control
    }

    pub fn upstream(&self) -> &UpstreamClient {
        &self.0.upstream
    }

    pub fn profiles(&self) -> &Profiles {
        &self.0.profiles
    }

    pub fn releases(&self) -> &Arc<Tracker> {
        &self.0.releases
    }

    /// The endpoint's `server/discover` result if it speaks the sessionless 2026-07-28 revision
    /// (cached per endpoint for [`DISCOVERY_TTL`]); `None` when it needs the session-era
    /// handshake, or cannot be reached (the handshake then reports the failure).
    pub async fn discovered(&self, server: &Server, url: &str) -> Option<Value> {
        if let Some(known) = self.0.profiles.discovery(url) {
            return known;
        }
        match self.0.upstream.discover(url, &server.upstream_headers.pairs()).await {
            Ok(result) => {
                self.0.profiles.remember_discovery(url, result.clone());
                result
            }
            Err(e) => {
                let url = poolgate_shared::config::redact_credentials(url);
                tracing::debug!(%url, error = %e, "server/discover failed");
                None
            }
        }
    }

    /// Whether the server's (first) endpoint speaks the sessionless revision.
    pub async fn sessionless(&self, server: &Server) -> bool {
        let Some(e) = server.endpoints.first() else {
            return false;
        };
        match self.0.profiles.is_sessionless(&e.url) {
            Some(known) => known,
            None => self.discovered(server, &e.url).await.is_some(),
        }
    }

    /// Opens one upstream session at `url`: none at all for a sessionless server (its slot is a
    /// concurrency slot; the discovery, translated, is what session-era clients get as the
    /// initialize result), else the handshake in `version` (the latest session-era version when
    /// the caller has no preference or asks for one poolgate does not speak).
    pub async fn open_session(
        &self,
        server: &Server,
        url: &str,
        version: Option<&str>,
    ) -> Result<SlotMeta, UpstreamError> {
        if let Some(d) = self.discovered(server, url).await {
            return Ok(SlotMeta {
                session_id: None,
                protocol_version: Some(STATELESS_VERSION.to_owned()),
                endpoint: Some(url.to_owned()),
                init: Some(init_from_discovery(&d).to_string()),
            });
        }
        let version = match version {
            Some(v) if SESSION_VERSIONS.contains(&v) => v,
            _ => LATEST_SESSION_VERSION,
        };
        let init = self
            .0
            .upstream
            .initialize(url, &server.upstream_headers.pairs(), version)
            .await?;
        Ok(SlotMeta {
            session_id: init.session_id,
            protocol_version: Some(init.protocol_version),
            endpoint: Some(url.to_owned()),
            init: Some(init.result.to_string()),
        })
    }

    /// Creates the slot a reservation stands for: opens its upstream session and commits it; the
    /// reservation is aborted when the upstream fails or the server's endpoint list changed
    /// under it.
    pub async fn create_slot(
        &self,
        server: &Server,
        resv: &Reservation,
        version: Option<&str>,
    ) -> Result<Committed, SlotError> {
        let control = self.control();
        let Some(endpoint) = server.endpoints.get(resv.endpoint as usize) else {
            let _ = control.abort(&server.id, &resv.id).await;
            return Err(SlotError::EndpointsChanged);
        };
        let meta = match self.open_session(server, &endpoint.url, version).await {
            Ok(m) => m,
            Err(e) => {
                let _ = control.abort(&server.id, &resv.id).await;
                if e.counts_against_endpoint() {
                    self.note_endpoint(&server.id, resv.endpoint, EndpointOutcome::CreateFailed)
                        .await;
                }
                return Err(e.into());
            }
        };
        let slot_id = uuid::Uuid::new_v4().simple().to_string();
        match control.commit(&server.id, &resv.id, &slot_id, &meta).await {
            Ok(c) => Ok(c),
            Err(e) => {
                // The slot never joined the pool: end its upstream session.
                let target = SessionTarget {
                    url: endpoint.url.clone(),
                    session_id: meta.session_id,
                    protocol_version: meta.protocol_version.unwrap_or_default(),
                    headers: server.upstream_headers.pairs(),
                };
                let _ = self.0.upstream.close(&target).await;
                Err(e.into())
            }
        }
    }

    /// A lease on a slot of `server`'s pool. See [`LeaseRequest`].
    pub async fn lease(&self, server: &Arc<Server>, req: LeaseRequest<'_>) -> Result<LeaseGuard, SlotError> {
        let first = self.lease_once(server, req).await?;
        if !(req.pre_ping && server.pool.pool_pre_ping) || self.young(server, &first) {
            return Ok(first);
        }
        match self.0.upstream.ping(&first.target()).await {
            Ok(()) => Ok(first),
            Err(e) => {
                tracing::info!(server_id = %server.id, slot = %first.slot().id, error = %e, "pre-ping failed; slot marked unhealthy");
                if let Some(k) = req.key {
                    let _ = self.control().unbind(&server.id, k).await;
                }
                first.retire_unhealthy().await;
                // The second one is handed out as it is: a pool whose every session fails its
                // ping reports the failure on the request itself.
                self.lease_once(server, req).await
            }
        }
    }

    /// Whether the lease's slot was created within the pre-ping window (control-plane time).
    fn young(&self, server: &Server, lease: &LeaseGuard) -> bool {
        let granted_ms = lease.lease().expires_ms - i64::from(server.pool.pool_lease_ttl) * 1000;
        granted_ms - lease.slot().created_ms < self.0.pre_ping_window.as_millis() as i64
    }

    async fn lease_once(&self, server: &Arc<Server>, req: LeaseRequest<'_>) -> Result<LeaseGuard, SlotError> {
        let timeout = Duration::from_secs(server.pool.pool_timeout.into());
        let acquire = || AcquireRequest {
            user: req.user.map(str::to_owned),
            ..AcquireRequest::new(&self.0.holder, req.key)
        };
        let mut acquired = if req.key.is_none() {
            self.acquire_admitted(server, acquire(), timeout).await
        } else {
            self.0.pools.acquire(&server.id, &acquire(), timeout).await
        };
        if matches!(acquired, Err(ControlError::BindingLost)) && req.key.is_some_and(|k| k.starts_with(USER_KEY_PREFIX))
        {
            // A per-user binding (2026-07-28 clients have no session to lose): the acquire already
            // dropped the dead binding, so binding again gives the user a fresh upstream session.
            acquired = self.0.pools.acquire(&server.id, &acquire(), timeout).await;
        }
        match acquired? {
            Acquired::Leased(lease) => Ok(LeaseGuard::new(self.clone(), server, lease)),
            Acquired::Create(resv) => match self.create_slot(server, &resv, req.version).await? {
                Committed::Leased(lease) => Ok(LeaseGuard::new(self.clone(), server, lease)),
                Committed::Added(_) => Err(SlotError::BindingChanged),
            },
        }
    }

    /// An unbound lease through admission (see `admission.rs`): at once when a slot is free and
    /// nobody queues here; else queued in turn, for at most what the pool can serve, or refused.
    async fn acquire_admitted(
        &self,
        server: &Server,
        mut req: AcquireRequest,
        timeout: Duration,
    ) -> Result<Acquired, ControlError> {
        let admission = self.admission(&server.id);
        if admission.waiting() == 0 {
            if let Some(acquired) = self.0.pools.try_acquire(&server.id, &req).await? {
                return Ok(acquired);
            }
            // Charged once by the rate limit: the queued attempts are re-tries.
            req.first = false;
        }
        let capacity = server
            .pool
            .pool_max_size
            .saturating_mul(server.pool.pool_session_capacity);
        let wait = match admission.decide(capacity, timeout) {
            Decision::Wait(wait) => wait,
            Decision::Refuse { expected_ms } => return Err(ControlError::Overloaded { expected_ms }),
        };
        let started = tokio::time::Instant::now();
        let _queued = admission.enter();
        let Ok(_turn) = tokio::time::timeout(wait, admission.turn.lock()).await else {
            let _ = self.control().note_timeout(&server.id).await;
            return Err(ControlError::Exhausted(wait));
        };
        let left = wait.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        self.0.pools.acquire(&server.id, &req, left).await
    }

    /// The `initialize` result session-era clients get (and the protocol version behind it),
    /// from a lease's slot; cached per server for unbound slots.
    pub fn init_result(&self, server: &ServerId, meta: &SlotMeta, cache: bool) -> (String, Value) {
        let version = meta
            .protocol_version
            .clone()
            .unwrap_or_else(|| LATEST_SESSION_VERSION.to_owned());
        let result: Value = meta
            .init
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null);
        if cache {
            self.0.profiles.remember_init(server, &version, &result);
        }
        (version, result)
    }

    /// Releases a lease (used by [`LeaseGuard`]), then closes what left the pool.
    async fn release(&self, server: &Server, lease: &str, outcome: Outcome) {
        if let Some(ms) = outcome.latency_ms {
            self.admission(&server.id).observe(Duration::from_millis(ms));
        }
        match self.control().release(&server.id, lease, outcome).await {
            Ok(changed) => self.close_later(server, changed.closed),
            Err(e) => tracing::warn!(server_id = %server.id, error = %e, "release failed; the lease expires by TTL"),
        }
    }

    /// Marks a slot, then closes what left the pool.
    pub async fn mark(&self, server: &Server, slot: &str, state: SlotState) {
        match self.control().mark(&server.id, slot, state).await {
            Ok(changed) => self.close_later(server, changed.closed),
            Err(e) => tracing::debug!(server_id = %server.id, error = %e, "marking a slot failed"),
        }
    }

    /// Ends a binding and closes the slots that left the pool with it; whether it existed.
    pub async fn unbind(&self, server: &Server, key: &str) -> Result<bool, ControlError> {
        let changed = self.control().unbind(&server.id, key).await?;
        self.close_later(server, changed.closed);
        Ok(changed.changed)
    }

    /// Syncs `spec` into the control plane (which converges the pool to it, see
    /// `lua/sync.lua`) and, when it changed anything, closes the upstream sessions of the slots that
    /// left — the admin API and the reconcile pass both apply changes through here.
    pub async fn converge(
        &self,
        pool: &ServerId,
        spec: &crate::PoolSpec,
        server: Option<&Server>,
    ) -> Result<crate::Synced, ControlError> {
        let synced = self.control().sync(pool, spec).await?;
        if synced.changed || server.is_none() {
            // The slots that left are in the closing outbox.
            let reclaimed = self.control().reclaim(pool, CLOSES_PER_CONVERGE).await?;
            self.close_later_opt(server, reclaimed.closed);
        }
        Ok(synced)
    }

    /// Ends the upstream sessions of slots that left the pool (best effort, in the background).
    pub fn close_later(&self, server: &Server, closed: Vec<SlotRecord>) {
        self.close_later_opt(Some(server), closed);
    }

    /// [`close_later`](Self::close_later) when the server may be gone (its headers unknown).
    pub fn close_later_opt(&self, server: Option<&Server>, closed: Vec<SlotRecord>) {
        if closed.is_empty() {
            return;
        }
        let (client, server) = (self.0.upstream.clone(), server.cloned());
        tokio::spawn(async move {
            close_removed(&client, server.as_ref(), &closed).await;
        });
    }
}

/// The upstream session behind a pool slot, addressed with the server's own headers.
pub fn target_of(slot: &SlotRecord, headers: Vec<(String, String)>) -> SessionTarget {
    SessionTarget {
        url: slot.meta.endpoint.clone().unwrap_or_default(),
        session_id: slot.meta.session_id.clone(),
        protocol_version: slot.meta.protocol_version.clone().unwrap_or_default(),
        headers,
    }
}

/// Ends the upstream sessions of removed slots with DELETE; how many were closed (best effort:
/// an upstream that is down ends them by its own idle timeout).
pub async fn close_removed(upstream: &UpstreamClient, server: Option<&Server>, closed: &[SlotRecord]) -> u64 {
    use futures_util::StreamExt as _;
    let headers = server.map(|s| s.upstream_headers.pairs()).unwrap_or_default();
    let mut targets = Vec::with_capacity(closed.len());
    for slot in closed {
        let t = target_of(slot, headers.clone());
        if t.session_id.is_some() && !t.url.is_empty() {
            targets.push(t);
        }
    }
    // A few at a time: one black-holed endpoint costs CONTROL_TIMEOUT per batch, not per session.
    futures_util::stream::iter(targets)
        .map(|target| async move {
            match upstream.close(&target).await {
                Ok(()) => 1,
                Err(e) => {
                    let url = poolgate_shared::config::redact_credentials(&target.url);
                    tracing::debug!(%url, error = %e, "closing a removed upstream session failed");
                    0
                }
            }
        })
        .buffer_unordered(CLOSES_AT_ONCE)
        .fold(0u64, |n, one| async move { n + one })
        .await
}

/// Most removed slots one [`SlotClient::converge`] hands out to be closed (the rest wait in the
/// outbox for the next pass).
pub const CLOSES_PER_CONVERGE: u32 = 1000;

/// Upstream DELETEs one [`close_removed`] call runs at once.
pub const CLOSES_AT_ONCE: usize = 8;
