//! The control plane: where a pool's fleet-wide state lives and changes.
//!
//! Two implementations behind one type, [`ControlPlane`]: [`RedisControlPlane`] (Redis standalone,
//! Sentinel or Cluster, shared by the fleet; every change is one Lua script, `lua/*.lua`) and
//! [`EmbeddedControlPlane`] (in-process twin for the single node, same semantics, same errors).
//! Both pass one conformance suite (`control/tests/control`).
//!
//! # Model
//! A pool (one per server) has *slots* (upstream sessions, or concurrency slots for sessionless
//! upstreams), *leases* (the right to send one request on a slot, with a TTL), *reservations*
//! (a promise to create a slot, counted against `max_size`), and *bindings* (a key — a downstream
//! session, or a user for sticky — pinned to a slot, with an idle TTL). Every expiry is computed
//! from the control plane's own clock (Redis `TIME`), never a node's (I5).
//!
//! # Acquiring
//! [`ControlPlane::try_acquire`] makes one attempt: a lease, a reservation (the caller creates the
//! upstream session and then [`commit`](ControlPlane::commit)s or [`abort`](ControlPlane::abort)s),
//! or "wait". [`ControlPlane::acquire`] loops on it, sleeping on release notifications (Redis
//! pub/sub, or an in-process signal) with a periodic re-check because pub/sub is at-most-once,
//! until `timeout`, then fails with [`ControlError::Exhausted`]. Lease ids are chosen by the caller
//! so a re-sent call never takes a second lease (I11).
//!
//! # Layout
//! - `mod.rs`: [`ControlPlane`] (one type over both backends, the waiting `acquire`) and the
//!   types every caller sees ([`Lease`], [`Attempt`], [`Outcome`], [`PoolStats`], …).
//! - `ops/<op>.rs`: one operation per file — its script's Redis call (arguments, typed reply) and
//!   its embedded twin side by side; `lua/<op>.lua` is the script itself, `lua/prelude.lua` the
//!   helpers every pool script shares.
//! - `redis/`: [`RedisControlPlane`]: clients, bounded calls, script loading, pub/sub wake-ups;
//!   `reply.rs` decodes replies.
//! - `embedded/`: [`EmbeddedControlPlane`]: the lock and leader state; `pool.rs` the twin of a
//!   pool's keys and of the prelude's helpers; `zset.rs` the sorted set.
//! - `keys.rs` (the key schema, [`keys::PoolKey`]), `codec.rs` (MessagePack slot records),
//!   `directory.rs` ([`Pools`]: rebuilds a pool from the store).

mod codec;
mod directory;
mod embedded;
pub mod keys;
mod ops;
mod redis;
pub mod slots;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use codec::{SlotMeta, SlotRecord, SlotState, SLOT_RECORD_VERSION};
pub use directory::Pools;
pub use embedded::EmbeddedControlPlane;
pub use ops::LeaderOp;
pub use redis::{RedisControlPlane, RedisOptions};

/// `REDIS_SOCKET_KEEPALIVE`: idle time before (and between) TCP keepalive probes.
pub const REDIS_KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

use poolgate_shared::config::{Config, Mode};
use poolgate_shared::domain::pool::{Isolation, PoolConfig, Strategy};
use poolgate_shared::domain::server::{Server, ServerId};

/// Upper bound on any single control-plane call; past it the outcome is unknown.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// While waiting, re-check this often even without a notification (pub/sub can drop messages).
pub const WAIT_RECHECK: Duration = Duration::from_millis(500);
/// How long a node may take to create an upstream session before its reservation is void.
pub const DEFAULT_RESERVATION_TTL_MS: u64 = 30_000;
/// Sticky strategy's load bound factor c: no slot holds more than ceil(c × average) bindings.
pub const DEFAULT_STICKY_C_MILLI: u32 = 1250;

/// Control-plane failures. The variants keep apart what callers must treat differently.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Redis cannot be reached; nothing was done.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    /// The call timed out or the connection dropped mid-call: it may or may not have run.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Nothing freed up within the acquire timeout (HTTP 503 with Retry-After).
    #[error("pool exhausted: no slot freed up within {0:?}")]
    Exhausted(Duration),
    /// The pool's configuration is not in the control plane (never synced, or Redis restarted
    /// empty): sync it from the store and retry.
    #[error("pool is not configured in the control plane")]
    NotConfigured,
    /// The slot bound to this key is gone; in session isolation the client must start a new session.
    #[error("the upstream session bound to this key is gone")]
    BindingLost,
    /// The reservation expired or was aborted before the commit: close the created session.
    #[error("reservation expired or aborted")]
    ReservationGone,
    /// A leader-only write carried a fencing token older than one the pool has seen (I6).
    #[error("refused: a newer leader (token {newest}) exists")]
    StaleFence { newest: u64 },
    /// The control plane answered something this release does not understand.
    #[error("unexpected control-plane reply: {0}")]
    Protocol(String),
    /// No server with this id exists in the store.
    #[error("unknown pool {0}")]
    UnknownPool(String),
    /// A slot is needed and every endpoint's circuit breaker is open: fail fast.
    #[error("every endpoint of this server is failing (circuit breaker open)")]
    CircuitOpen,
    /// Admission refused a lease at once: the expected wait for a slot is past what the pool
    /// can serve within its bound (HTTP 503 with Retry-After).
    #[error("pool overloaded: the wait for a session (about {expected_ms} ms) would exceed the admission bound")]
    Overloaded { expected_ms: u64 },
    /// The user's rate limit refuses the request (HTTP 429): retry after `retry_after_ms`.
    #[error("rate limit exceeded: {rate} requests per second per user (burst {burst})")]
    RateLimited { retry_after_ms: u64, rate: u32, burst: u32 },
    /// The user holds as many client sessions or requests in flight as the pool allows one user
    /// (HTTP 429).
    #[error("{} quota reached: at most {limit} per user in this pool", .quota.setting())]
    OverQuota { quota: QuotaKind, limit: u32 },
    /// The configuration cannot produce a client (bad URL).
    #[error("control plane configuration: {0}")]
    Config(String),
}

/// Which per-user quota refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaKind {
    Sessions,
    Inflight,
}

impl QuotaKind {
    /// The pool setting that sets it.
    pub fn setting(self) -> &'static str {
        match self {
            QuotaKind::Sessions => "pool_max_sessions_per_user",
            QuotaKind::Inflight => "pool_max_inflight_per_user",
        }
    }

    /// `sessions` / `inflight`, as the scripts and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Sessions => "sessions",
            QuotaKind::Inflight => "inflight",
        }
    }
}

/// Per-user limits of a pool, enforced by `acquire` (0 = none). See the fairness part of
/// ARCHITECTURE.md: counted in the control plane, so every node enforces the same figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fairness {
    /// Client sessions one user may hold (session bindings).
    pub sessions_per_user: u32,
    /// Leases one user may hold at once (requests in flight).
    pub inflight_per_user: u32,
    /// How long a new client session may stay unused before it ends (ms; 0 = the idle TTL).
    pub unused_ttl_ms: u64,
    /// Requests per second per user (GCRA), and the burst admitted at once (0 = one second's).
    pub rate_per_user: u32,
    pub rate_burst: u32,
}

impl Fairness {
    pub fn for_pool(p: &PoolConfig) -> Fairness {
        Fairness {
            sessions_per_user: p.sessions_per_user(),
            inflight_per_user: p.inflight_per_user(),
            unused_ttl_ms: u64::from(p.pool_unused_ttl) * 1000,
            rate_per_user: p.pool_rate_limit,
            rate_burst: p.rate_burst(),
        }
    }
}

/// What a pool looks like to the control plane; built from the server's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub strategy: Strategy,
    pub isolation: Isolation,
    pub max_size: u32,
    /// Concurrent leases allowed on one slot (I2).
    pub capacity: u32,
    pub lease_ttl_ms: u64,
    pub idle_ttl_ms: u64,
    pub reservation_ttl_ms: u64,
    pub sticky_c_milli: u32,
    /// One weight per endpoint, in the server's endpoint order.
    pub endpoint_weights: Vec<u32>,
    /// What the pool converges to beyond its limits (`None` for a bare spec, as tests build it:
    /// then slots are never drained by a sync).
    pub identity: Option<PoolIdentity>,
    /// Per-user quotas and rate limit.
    pub fairness: Fairness,
}

/// Who a pool's upstream sessions belong to: a sync drains every slot that no longer matches
/// (SPEC §9, I14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolIdentity {
    /// `pool_enabled`: a disabled pool drains.
    pub enabled: bool,
    /// The server's endpoint URLs in order: slots at any other URL drain, and their bindings end.
    pub endpoints: Vec<String>,
    /// Fingerprint of the upstream headers (credentials): a change drains every slot.
    pub headers: String,
    /// The server's creation time (ms): a re-created server starts from nothing.
    pub incarnation: i64,
}

impl PoolSpec {
    pub fn for_server(server: &Server) -> PoolSpec {
        let p = &server.pool;
        PoolSpec {
            strategy: p.pool_strategy,
            isolation: p.pool_isolation,
            max_size: p.pool_max_size,
            capacity: p.pool_session_capacity,
            lease_ttl_ms: u64::from(p.pool_lease_ttl) * 1000,
            idle_ttl_ms: u64::from(p.pool_idle_ttl) * 1000,
            reservation_ttl_ms: DEFAULT_RESERVATION_TTL_MS,
            sticky_c_milli: DEFAULT_STICKY_C_MILLI,
            endpoint_weights: server.endpoints.iter().map(|e| e.weight).collect(),
            identity: Some(PoolIdentity {
                enabled: p.pool_enabled,
                endpoints: server.endpoints.iter().map(|e| e.url.clone()).collect(),
                headers: fingerprint(&server.upstream_headers.pairs()),
                incarnation: server.created_at.timestamp_millis(),
            }),
            fairness: Fairness::for_pool(p),
        }
    }

    /// The spec a deleted server's pool is synced to: disabled, no endpoint, an incarnation no
    /// server has — every slot leaves and every binding ends.
    pub fn tombstone() -> PoolSpec {
        PoolSpec {
            strategy: Strategy::RoundRobin,
            isolation: Isolation::Shared,
            max_size: 0,
            capacity: 1,
            lease_ttl_ms: 1000,
            idle_ttl_ms: 1000,
            reservation_ttl_ms: DEFAULT_RESERVATION_TTL_MS,
            sticky_c_milli: DEFAULT_STICKY_C_MILLI,
            endpoint_weights: vec![],
            identity: Some(PoolIdentity {
                enabled: false,
                endpoints: vec![],
                headers: String::new(),
                incarnation: -1,
            }),
            fairness: Fairness::default(),
        }
    }

    /// A digest of everything the sync stores, so a sync that would change nothing is skipped
    /// after one comparison (the reconcile pass syncs every pool every interval).
    pub fn digest(&self) -> String {
        let mut all: Vec<String> = self.fields().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(i) = &self.identity {
            all.push(format!("enabled={}|inc={}|hdr={}", i.enabled, i.incarnation, i.headers));
            all.extend(i.endpoints.iter().cloned());
        }
        fingerprint_of(&all.join("\n"))
    }

    /// Everything the sync script gets: the limits, the digest, and the identity when known.
    pub(crate) fn sync_args(&self) -> Vec<(&'static str, String)> {
        let mut args = self.fields();
        args.push(("hash", self.digest()));
        if let Some(i) = &self.identity {
            args.extend([
                ("enabled", if i.enabled { "1" } else { "0" }.to_owned()),
                ("inc", i.incarnation.to_string()),
                ("hdr", i.headers.clone()),
                ("eps", i.endpoints.join("\n")),
            ]);
        }
        args
    }

    /// `field, value` pairs of the limits, as the sync script stores them.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let weights: Vec<String> = self.endpoint_weights.iter().map(u32::to_string).collect();
        vec![
            ("strategy", self.strategy.as_str().to_owned()),
            ("iso", self.isolation.as_str().to_owned()),
            ("max", self.max_size.to_string()),
            ("cap", self.capacity.max(1).to_string()),
            ("lease_ttl", self.lease_ttl_ms.to_string()),
            ("idle_ttl", self.idle_ttl_ms.to_string()),
            ("resv_ttl", self.reservation_ttl_ms.to_string()),
            ("sticky_c", self.sticky_c_milli.to_string()),
            (
                "ew",
                if weights.is_empty() {
                    "1".to_owned()
                } else {
                    weights.join(",")
                },
            ),
            ("qs", self.fairness.sessions_per_user.to_string()),
            ("qi", self.fairness.inflight_per_user.to_string()),
            ("ut", self.fairness.unused_ttl_ms.to_string()),
            ("rl", self.fairness.rate_per_user.to_string()),
            ("rb", self.fairness.rate_burst.to_string()),
        ]
    }
}

/// A stable fingerprint of header pairs (sorted), short hex; never the values themselves.
pub fn fingerprint(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", k.to_ascii_lowercase()))
        .collect();
    sorted.sort();
    fingerprint_of(&sorted.join("\n"))
}

fn fingerprint_of(text: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// What a sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Synced {
    /// The pool configuration's generation after the call.
    pub generation: u64,
    /// False when the stored configuration already matched (nothing was written).
    pub changed: bool,
}

/// A lease id, reservation id or slot id: chosen by the caller (UUIDs in practice).
pub type Id = String;

/// One acquire.
#[derive(Clone, Debug)]
pub struct AcquireRequest {
    /// Caller-chosen; re-sending the same id returns the same lease or reservation (I11).
    pub lease_id: Id,
    /// The node asking (for diagnostics).
    pub holder: String,
    /// Binding key: the downstream session (session isolation) or user (sticky), if any.
    pub key: Option<String>,
    /// How long the caller has waited so far (ms); recorded in the wait histogram when granted.
    pub waited_ms: u64,
    /// The user (escaped token subject) quotas and the rate limit count; `None` = anonymous.
    pub user: Option<String>,
    /// The request's first attempt: the rate limit charges it (re-tries after a wait are free).
    pub first: bool,
}

impl AcquireRequest {
    pub fn new(holder: &str, key: Option<&str>) -> Self {
        AcquireRequest {
            lease_id: uuid::Uuid::new_v4().to_string(),
            holder: holder.to_owned(),
            key: key.map(str::to_owned),
            waited_ms: 0,
            user: None,
            first: true,
        }
    }
}

/// A granted lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub id: Id,
    pub slot: SlotRecord,
    /// Control-plane time (ms) at which it expires unless renewed.
    pub expires_ms: i64,
    /// The slot was just created for this lease, or handed out for the first time.
    pub fresh: bool,
}

/// Permission to create one slot at an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: Id,
    pub endpoint: u32,
}

/// One acquire attempt's outcome.
// Short-lived return values: boxing the lease would only add an allocation per call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Leased(Lease),
    Create(Reservation),
    /// Nothing free and no room to create: `in_use` of `limit`.
    Wait {
        in_use: u32,
        limit: u32,
    },
}

/// What [`ControlPlane::acquire`] returns.
// Short-lived return values: boxing the lease would only add an allocation per call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Acquired {
    Leased(Lease),
    Create(Reservation),
}

/// What a commit produced.
// Short-lived return values: boxing the lease would only add an allocation per call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Committed {
    /// The reservation came from an acquire: here is its lease on the new slot.
    Leased(Lease),
    /// A warm-up slot joined the pool.
    Added(Id),
}

/// Result of release, unbind and mark: whether something changed, and slots that left the pool
/// (close their upstream sessions).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changed {
    pub changed: bool,
    pub closed: Vec<SlotRecord>,
}

/// Result of a reclaim pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reclaimed {
    pub leases: u32,
    pub bindings: u32,
    pub reservations: u32,
    pub closed: Vec<SlotRecord>,
}

/// When endpoints' circuit breakers open (`UPSTREAM_BREAKER_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that open a breaker; 0 = never.
    pub threshold: u32,
    /// How long it stays open before one probe may try.
    pub open: Duration,
}

impl Breaker {
    pub fn from_config(config: &Config) -> Breaker {
        Breaker {
            threshold: config.upstream.breaker_threshold,
            open: config.upstream.breaker_open,
        }
    }
}

/// What happened at an endpoint, for its breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointOutcome {
    /// A probe answered: the breaker closes.
    Ok,
    /// An upstream session could not be created there (also counts toward pool health).
    CreateFailed,
    /// A request failed in transport, timed out, got a 5xx or broke the protocol.
    Failed,
}

/// An endpoint breaker's state, as `mcp_gateway_circuit_breaker_state` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// One endpoint's breaker in [`PoolStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointBreakerStats {
    /// Failures in a row.
    pub failures: u64,
    pub state: BreakerState,
}

impl Default for EndpointBreakerStats {
    fn default() -> Self {
        EndpointBreakerStats {
            failures: 0,
            state: BreakerState::Closed,
        }
    }
}

/// How a leased request went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub latency_ms: Option<u64>,
    pub error: bool,
    /// Never use the slot again (strategy `none`, or the upstream session was lost).
    pub retire: bool,
    /// Whether this request's user returned to the slot it used last time (shared isolation):
    /// the optimizer's evidence for sticky.
    pub affinity: Affinity,
}

/// What a node saw of a request's user and its slot (node-local memory, shared isolation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Affinity {
    /// No user, or not tracked.
    #[default]
    None,
    /// The user's previous request went to the same slot.
    Hit,
    /// The user came back but landed on another slot.
    Miss,
    /// First request of this user seen.
    New,
}

impl Affinity {
    /// The wire code the release script takes.
    pub fn code(self) -> u8 {
        match self {
            Affinity::None => 0,
            Affinity::Hit => 1,
            Affinity::Miss => 2,
            Affinity::New => 3,
        }
    }
}

/// Upper bounds (ms) of the fleet-wide wait-time and request-time histograms, shared by the Lua
/// scripts (prelude `BUCKETS_MS`) and the embedded twin; one more bucket counts everything above.
pub const BUCKETS_MS: [u64; 13] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// Index of the bucket `ms` falls in (`BUCKETS_MS.len()` = above the last bound).
pub fn bucket_of(ms: u64) -> usize {
    BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(BUCKETS_MS.len())
}

/// A fleet-wide histogram: count per bucket of [`BUCKETS_MS`] (plus overflow) and the sum in ms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS_MS.len() + 1],
    pub sum_ms: u64,
}

impl Histogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Bucket-wise difference (counters only grow; a reset gives zeros, not underflow).
    pub fn since(&self, before: &Histogram) -> Histogram {
        let mut d = Histogram {
            sum_ms: self.sum_ms.saturating_sub(before.sum_ms),
            ..Histogram::default()
        };
        for (i, b) in d.buckets.iter_mut().enumerate() {
            *b = self.buckets[i].saturating_sub(before.buckets[i]);
        }
        d
    }

    /// The q-quantile (0..1) in ms, interpolated linearly inside its bucket (as Prometheus'
    /// `histogram_quantile` does); `None` when empty. The overflow bucket answers its lower bound.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0.0;
        for (i, n) in self.buckets.iter().enumerate() {
            let n = *n as f64;
            if n > 0.0 && seen + n >= rank {
                let lo = if i == 0 { 0.0 } else { BUCKETS_MS[i - 1] as f64 };
                let Some(hi) = BUCKETS_MS.get(i) else {
                    return Some(lo);
                };
                return Some(lo + (*hi as f64 - lo) * ((rank - seen) / n).clamp(0.0, 1.0));
            }
            seen += n;
        }
        Some(BUCKETS_MS[BUCKETS_MS.len() - 1] as f64)
    }
}

/// Releases' affinity reports (see [`Affinity`]) and the request time (ms) summed per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AffinityStats {
    pub hits: u64,
    pub misses: u64,
    pub new: u64,
    pub hit_ms: u64,
    pub miss_ms: u64,
}

/// A pool's figures, fleet-wide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub configured: bool,
    /// `pool_max_size` as the control plane enforces it (0 when not configured).
    pub max_size: u64,
    /// `pool_enabled` as the control plane last converged to (true when never told).
    pub enabled: bool,
    pub slots: u64,
    pub reservations: u64,
    pub leases: u64,
    pub bindings: u64,
    pub available: u64,
    pub ready: u64,
    pub draining: u64,
    pub unhealthy: u64,
    pub retired: u64,
    pub busy: u64,
    pub acquisitions: u64,
    pub releases: u64,
    pub creates: u64,
    pub destroys: u64,
    pub timeouts: u64,
    pub rebinds: u64,
    pub errors: u64,
    pub expired: u64,
    pub fence: u64,
    /// The last health-check pass: sessions pinged, and how many failed.
    pub health_pinged: u64,
    pub health_failed: u64,
    /// How long acquisitions waited (granted ones; timeouts are counted in `timeouts`).
    pub wait: Histogram,
    /// How long leased requests took (the lease's hold time, as the releasing node measured it).
    pub hold: Histogram,
    /// Per endpoint index: (requests, summed ms) of released requests.
    pub endpoint_hold: std::collections::BTreeMap<u32, (u64, u64)>,
    pub affinity: AffinityStats,
    /// Per endpoint index with failures recorded: its breaker.
    pub breakers: std::collections::BTreeMap<u32, EndpointBreakerStats>,
    /// Slot creations failed in a row (reset by a created slot or a probe that answered).
    pub create_failures: u64,
}

impl PoolStats {
    /// The breaker state of endpoint `i` when the figures were read.
    pub fn breaker_state(&self, i: u32) -> BreakerState {
        self.breakers.get(&i).map_or(BreakerState::Closed, |b| b.state)
    }

    /// Fields with an index: `st_wb:<bucket>`, `st_hb:<bucket>`, `st_hn:<endpoint>`, `st_hm:<endpoint>`.
    fn dynamic_field(&mut self, name: &str, v: u64) {
        let Some((field, index)) = name.strip_prefix("st_").and_then(|f| f.split_once(':')) else {
            return;
        };
        let Ok(i) = index.parse::<u32>() else {
            return;
        };
        match field {
            "wb" => {
                if let Some(b) = self.wait.buckets.get_mut(i as usize) {
                    *b = v;
                }
            }
            "hb" => {
                if let Some(b) = self.hold.buckets.get_mut(i as usize) {
                    *b = v;
                }
            }
            "hn" => self.endpoint_hold.entry(i).or_default().0 = v,
            "hm" => self.endpoint_hold.entry(i).or_default().1 = v,
            "bf" => self.breakers.entry(i).or_default().failures = v,
            "bs" => {
                self.breakers.entry(i).or_default().state = match v {
                    1 => BreakerState::Open,
                    2 => BreakerState::HalfOpen,
                    _ => BreakerState::Closed,
                }
            }
            _ => {}
        }
    }

    /// Builds stats from `name, value` pairs (the stats script's reply).
    pub(crate) fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, u64)>) -> PoolStats {
        let mut s = PoolStats::default();
        for (k, v) in pairs {
            match k {
                "configured" => s.configured = v > 0,
                "cfg_max" => s.max_size = v,
                "cfg_enabled" => s.enabled = v > 0,
                "st_cfr" => s.create_failures = v,
                "slots" => s.slots = v,
                "reservations" => s.reservations = v,
                "leases" => s.leases = v,
                "bindings" => s.bindings = v,
                "available" => s.available = v,
                "state_ready" => s.ready = v,
                "state_draining" => s.draining = v,
                "state_unhealthy" => s.unhealthy = v,
                "state_retired" => s.retired = v,
                "state_busy" => s.busy = v,
                "st_acq" => s.acquisitions = v,
                "st_rel" => s.releases = v,
                "st_cre" => s.creates = v,
                "st_des" => s.destroys = v,
                "st_tmo" => s.timeouts = v,
                "st_reb" => s.rebinds = v,
                "st_err" => s.errors = v,
                "st_exp" => s.expired = v,
                "st_fence" => s.fence = v,
                "st_hping" => s.health_pinged = v,
                "st_hfail" => s.health_failed = v,
                "st_wms" => s.wait.sum_ms = v,
                "st_hms" => s.hold.sum_ms = v,
                "st_kh" => s.affinity.hits = v,
                "st_km" => s.affinity.misses = v,
                "st_kn" => s.affinity.new = v,
                "st_khm" => s.affinity.hit_ms = v,
                "st_kmm" => s.affinity.miss_ms = v,
                other => s.dynamic_field(other, v),
            }
        }
        s
    }
}

/// Splits a leader value `holder|term`.
pub(crate) fn parse_leader(value: &str) -> Option<(String, u64)> {
    let (holder, term) = value.rsplit_once('|')?;
    Some((holder.to_owned(), term.parse().ok()?))
}

/// Outcome of a leadership campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Campaign {
    /// This holder leads; `term` is its fencing token.
    Won { term: u64 },
    /// Someone else leads (`"holder|term"`).
    Held { by: String },
}

/// The control plane a process uses; cheap to clone.
#[derive(Clone, Debug)]
pub enum ControlPlane {
    Embedded(Arc<EmbeddedControlPlane>),
    Redis(Arc<RedisControlPlane>),
}

macro_rules! dispatch {
    ($self:expr, |$b:ident| $body:expr) => {
        match $self {
            ControlPlane::Embedded($b) => $body,
            ControlPlane::Redis($b) => $body,
        }
    };
}

impl ControlPlane {
    /// The control plane `config` asks for. Redis connects in the background, so a node starts
    /// (and reports not ready) while Redis is down, and recovers without a restart.
    pub fn from_config(config: &Config) -> Result<ControlPlane, ControlError> {
        match (config.mode(), &config.pooling.redis.url) {
            (Mode::Distributed, Some(url)) => {
                let r = &config.pooling.redis;
                let options = RedisOptions {
                    pool_size: r.pool_size as usize,
                    call_timeout: r.pool_timeout,
                    keepalive: r.socket_keepalive.then_some(REDIS_KEEPALIVE_IDLE),
                };
                Ok(ControlPlane::Redis(Arc::new(RedisControlPlane::connect_with(
                    url.expose(),
                    &r.prefix,
                    options,
                )?)))
            }
            _ => Ok(ControlPlane::Embedded(Arc::new(EmbeddedControlPlane::new()))),
        }
    }

    /// `"embedded"` or `"redis"`, for logs and `/ready`.
    pub fn backend(&self) -> &'static str {
        match self {
            ControlPlane::Embedded(_) => "embedded",
            ControlPlane::Redis(_) => "redis",
        }
    }

    /// Whether the control plane can serve calls now.
    pub async fn ping(&self) -> Result<(), ControlError> {
        dispatch!(self, |b| b.ping().await)
    }

    /// Stores the pool's configuration and converges the pool to it (see `lua/sync.lua`); slots
    /// that left go to the closing outbox (`reclaim` hands them out).
    pub async fn sync(&self, pool: &ServerId, spec: &PoolSpec) -> Result<Synced, ControlError> {
        dispatch!(self, |b| b.sync(pool, spec).await)
    }

    /// One acquire attempt.
    pub async fn try_acquire(&self, pool: &ServerId, req: &AcquireRequest) -> Result<Attempt, ControlError> {
        dispatch!(self, |b| b.try_acquire(pool, req).await)
    }

    /// Acquires, waiting up to `timeout` for a release anywhere in the fleet.
    pub async fn acquire(
        &self,
        pool: &ServerId,
        req: &AcquireRequest,
        timeout: Duration,
    ) -> Result<Acquired, ControlError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribe before the first attempt so a release between attempt and wait is not missed.
        let mut changes = self.changes(pool).await?;
        let (started, mut req) = (tokio::time::Instant::now(), req.clone());
        loop {
            changes.borrow_and_update();
            req.waited_ms = started.elapsed().as_millis() as u64;
            match self.try_acquire(pool, &req).await? {
                Attempt::Leased(lease) => return Ok(Acquired::Leased(lease)),
                Attempt::Create(resv) => return Ok(Acquired::Create(resv)),
                Attempt::Wait { .. } => {}
            }
            req.first = false;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                // Best effort: the timeout counter is a statistic, not state.
                let _ = self.note_timeout(pool).await;
                return Err(ControlError::Exhausted(timeout));
            }
            let nap = (deadline - now).min(WAIT_RECHECK);
            let _ = tokio::time::timeout(nap, changes.changed()).await;
        }
    }

    /// Adds the reservation's newly created slot; `meta` describes its upstream session.
    pub async fn commit(
        &self,
        pool: &ServerId,
        reservation: &str,
        slot_id: &str,
        meta: &SlotMeta,
    ) -> Result<Committed, ControlError> {
        dispatch!(self, |b| b.commit(pool, reservation, slot_id, meta).await)
    }

    /// Gives a reservation up; `false` if it no longer existed.
    pub async fn abort(&self, pool: &ServerId, reservation: &str) -> Result<bool, ControlError> {
        dispatch!(self, |b| b.abort(pool, reservation).await)
    }

    /// Ends a lease (idempotent, I3) and records how the request went.
    pub async fn release(&self, pool: &ServerId, lease: &str, outcome: Outcome) -> Result<Changed, ControlError> {
        dispatch!(self, |b| b.release(pool, lease, outcome).await)
    }

    /// Extends a lease by the pool's lease TTL; `None` if it is gone.
    pub async fn renew(&self, pool: &ServerId, lease: &str) -> Result<Option<i64>, ControlError> {
        dispatch!(self, |b| b.renew(pool, lease).await)
    }

    /// Ends a binding; in session isolation its slot is retired.
    pub async fn unbind(&self, pool: &ServerId, key: &str) -> Result<Changed, ControlError> {
        dispatch!(self, |b| b.unbind(pool, key).await)
    }

    /// Keeps a binding alive; `false` if there is none.
    pub async fn touch(&self, pool: &ServerId, key: &str) -> Result<bool, ControlError> {
        dispatch!(self, |b| b.touch(pool, key).await)
    }

    /// Sets a slot's state.
    pub async fn mark(&self, pool: &ServerId, slot: &str, state: SlotState) -> Result<Changed, ControlError> {
        dispatch!(self, |b| b.mark(pool, slot, state).await)
    }

    /// A leader's `mark` (fenced by its token, I6) of a slot it saw idle: acts only while the slot
    /// is still ready with no lease and no binding (a slot bound meanwhile is left alone).
    pub async fn mark_idle_fenced(
        &self,
        pool: &ServerId,
        slot: &str,
        state: SlotState,
        token: u64,
    ) -> Result<Changed, ControlError> {
        dispatch!(self, |b| b.mark_idle_fenced(pool, slot, state, token).await)
    }

    /// Reclaims expired leases, idle bindings and dead reservations, up to `limit` of each.
    pub async fn reclaim(&self, pool: &ServerId, limit: u32) -> Result<Reclaimed, ControlError> {
        dispatch!(self, |b| b.reclaim(pool, limit).await)
    }

    pub async fn stats(&self, pool: &ServerId) -> Result<PoolStats, ControlError> {
        dispatch!(self, |b| b.stats(pool).await)
    }

    pub async fn slots(&self, pool: &ServerId) -> Result<Vec<SlotRecord>, ControlError> {
        dispatch!(self, |b| b.slots(pool).await)
    }

    /// Records an outcome at endpoint `ep` for its circuit breaker; returns the breaker's state.
    pub async fn breaker(
        &self,
        pool: &ServerId,
        ep: u32,
        outcome: EndpointOutcome,
        breaker: Breaker,
    ) -> Result<BreakerState, ControlError> {
        dispatch!(self, |b| b.breaker(pool, ep, outcome, breaker).await)
    }

    /// Removes a deleted server's pool once it is empty (`true`); `false` while something is left.
    pub async fn forget(&self, pool: &ServerId) -> Result<bool, ControlError> {
        dispatch!(self, |b| b.forget(pool).await)
    }

    /// Records the last health-check pass of a pool (pinged, failed).
    pub async fn note_health(&self, pool: &ServerId, pinged: u32, failed: u32) -> Result<(), ControlError> {
        dispatch!(self, |b| b.note_health(pool, pinged, failed).await)
    }

    /// Counts an acquire that timed out.
    pub async fn note_timeout(&self, pool: &ServerId) -> Result<(), ControlError> {
        dispatch!(self, |b| b.note_timeout(pool).await)
    }

    /// Every pool that was ever synced.
    pub async fn pools(&self) -> Result<Vec<ServerId>, ControlError> {
        dispatch!(self, |b| b.pools().await)
    }

    /// A receiver that changes whenever capacity may have been freed in `pool`.
    pub async fn changes(&self, pool: &ServerId) -> Result<watch::Receiver<u64>, ControlError> {
        dispatch!(self, |b| b.changes(pool).await)
    }

    /// The current leader (holder, term), if any: for `/ready`, metrics and poolctl.
    pub async fn leader(&self) -> Result<Option<(String, u64)>, ControlError> {
        dispatch!(self, |b| b.leader().await)
    }

    /// Tries to become leader for `ttl`.
    pub async fn campaign(&self, holder: &str, ttl: Duration) -> Result<Campaign, ControlError> {
        dispatch!(self, |b| b.campaign(holder, ttl).await)
    }

    /// Extends leadership; `false` if it was lost.
    pub async fn renew_leadership(&self, holder: &str, term: u64, ttl: Duration) -> Result<bool, ControlError> {
        dispatch!(self, |b| b.leader_op(LeaderOp::Renew, holder, term, ttl).await)
    }

    /// Gives leadership up; `false` if it was not held.
    pub async fn resign(&self, holder: &str, term: u64) -> Result<bool, ControlError> {
        dispatch!(self, |b| b
            .leader_op(LeaderOp::Resign, holder, term, Duration::ZERO)
            .await)
    }

    /// Records a leader's token on a pool so older leaders' writes are refused there (I6).
    /// Raises the term counter to at least `min` (a newer token seen on a pool than the counter
    /// holds: the counter lost an increment in a failover).
    pub async fn seed_term(&self, min: u64) -> Result<(), ControlError> {
        dispatch!(self, |b| b.seed_term(min).await)
    }

    pub async fn fence(&self, pool: &ServerId, token: u64) -> Result<(), ControlError> {
        dispatch!(self, |b| b.fence(pool, token).await)
    }

    /// Leader only, fenced: retires idle slots older than `max_age` (up to `limit`).
    pub async fn recycle(
        &self,
        pool: &ServerId,
        token: u64,
        max_age: Duration,
        limit: u32,
    ) -> Result<Vec<SlotRecord>, ControlError> {
        dispatch!(self, |b| b.recycle(pool, token, max_age, limit).await)
    }

    /// Leader only, fenced: a reservation to create one more idle slot while the pool has fewer
    /// than `min` idle ready slots (warm-ups in flight included) and room below its max (I1).
    pub async fn warm(
        &self,
        pool: &ServerId,
        token: u64,
        min: u32,
        reservation: &str,
        holder: &str,
    ) -> Result<Option<Reservation>, ControlError> {
        dispatch!(self, |b| b.warm(pool, token, min, reservation, holder).await)
    }

    /// Closes connections (shutdown).
    pub async fn close(&self) {
        if let ControlPlane::Redis(c) = self {
            c.close().await;
        }
    }
}
