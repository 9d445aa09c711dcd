//! Backends for the suite. Each test gets its own key prefix (and so its own pools), so tests
//! never see each other's state even on one Redis.

use std::sync::Arc;
use std::time::Duration;

use poolgate_control::{
    AcquireRequest, Attempt, Committed, ControlPlane, EmbeddedControlPlane, Lease, Outcome, PoolSpec,
    RedisControlPlane, Reservation, SlotMeta, SlotRecord,
};
use poolgate_shared::domain::pool::{Isolation, Strategy};
use poolgate_shared::domain::server::ServerId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
    Cluster,
    Sentinel,
}

impl Backend {
    /// The Redis URL `scripts/test.sh` exported for this backend; a missing one fails the test
    /// (run the suite through scripts/test.sh) rather than skipping it.
    pub fn url(self) -> Option<String> {
        let var = match self {
            Backend::Embedded => return None,
            Backend::Redis => "POOLGATE_TEST_REDIS_URL",
            Backend::Cluster => "POOLGATE_TEST_REDIS_CLUSTER_URL",
            Backend::Sentinel => "POOLGATE_TEST_REDIS_SENTINEL_URL",
        };
        Some(std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test.sh")))
    }
}

/// A control plane for one test: a private embedded instance, or a Redis client whose key
/// prefix is unique to this test. `handles` gives several independent clients ("nodes").
pub struct Plane {
    pub backend: Backend,
    pub prefix: String,
    shared_embedded: Option<Arc<EmbeddedControlPlane>>,
}

impl Plane {
    pub fn new(backend: Backend) -> Plane {
        let prefix = format!("pgtest:{}:", uuid::Uuid::new_v4().simple());
        let shared_embedded = (backend == Backend::Embedded).then(|| Arc::new(EmbeddedControlPlane::new()));
        Plane {
            backend,
            prefix,
            shared_embedded,
        }
    }

    /// A new node's handle on the same control plane (a separate Redis connection).
    pub async fn node(&self) -> ControlPlane {
        match &self.shared_embedded {
            Some(e) => ControlPlane::Embedded(e.clone()),
            None => {
                let url = self.backend.url().unwrap_or_default();
                let plane = ControlPlane::Redis(Arc::new(
                    RedisControlPlane::connect(&url, &self.prefix).expect("redis client builds"),
                ));
                for _ in 0..100 {
                    if plane.ping().await.is_ok() {
                        return plane;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("{:?} at {url} never became reachable", self.backend);
            }
        }
    }
}

impl Plane {
    /// `n` independent handles ("nodes") on this control plane.
    pub async fn nodes(&self, n: usize) -> Vec<ControlPlane> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.node().await);
        }
        out
    }
}

pub fn pool_id() -> ServerId {
    ServerId::parse(&format!("pool-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])).expect("valid id")
}

/// A spec with test-friendly defaults: shared isolation, capacity 1, short TTLs.
pub fn spec(strategy: Strategy, max: u32) -> PoolSpec {
    PoolSpec {
        strategy,
        isolation: Isolation::Shared,
        max_size: max,
        capacity: 1,
        lease_ttl_ms: 30_000,
        idle_ttl_ms: 60_000,
        reservation_ttl_ms: 30_000,
        sticky_c_milli: 1250,
        endpoint_weights: vec![1],
        identity: None,
        fairness: Default::default(),
    }
}

/// Declares each async test fn `f(Backend)` once per backend: `embedded::f`, `redis::f`,
/// `cluster::f`, `sentinel::f`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        mod embedded { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::harness::Backend::Embedded).await })+ }
        mod redis { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::harness::Backend::Redis).await })+ }
        mod cluster { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::harness::Backend::Cluster).await })+ }
        mod sentinel { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::harness::Backend::Sentinel).await })+ }
    };
}

/// What a node records about a test slot's upstream session.
pub fn meta(slot_id: &str) -> SlotMeta {
    SlotMeta {
        session_id: Some(format!("upstream-{slot_id}")),
        protocol_version: Some("2025-11-25".into()),
        endpoint: None,
        init: None,
    }
}

/// One attempt that must grant a lease.
pub async fn leased(cp: &ControlPlane, pool: &ServerId, req: &AcquireRequest) -> Lease {
    match cp.try_acquire(pool, req).await {
        Ok(Attempt::Leased(lease)) => lease,
        other => panic!("expected a lease for {req:?}, got {other:?}"),
    }
}

/// One attempt that must hand out a reservation.
pub async fn reserved(cp: &ControlPlane, pool: &ServerId, req: &AcquireRequest) -> Reservation {
    match cp.try_acquire(pool, req).await {
        Ok(Attempt::Create(resv)) => {
            assert_eq!(resv.id, req.lease_id, "a reservation carries the request's id");
            resv
        }
        other => panic!("expected a reservation for {req:?}, got {other:?}"),
    }
}

/// Commits a reservation that came from an acquire: the lease on the new slot.
pub async fn commit_lease(cp: &ControlPlane, pool: &ServerId, resv: &Reservation, slot_id: &str) -> Lease {
    match cp.commit(pool, &resv.id, slot_id, &meta(slot_id)).await {
        Ok(Committed::Leased(lease)) => {
            assert_eq!((lease.id.as_str(), lease.slot.id.as_str()), (resv.id.as_str(), slot_id));
            lease
        }
        other => panic!("expected a lease from committing {resv:?}, got {other:?}"),
    }
}

/// An attempt that must reserve, committed as `slot_id`: the lease on the new slot.
pub async fn create_slot(cp: &ControlPlane, pool: &ServerId, key: Option<&str>, slot_id: &str) -> Lease {
    let req = AcquireRequest::new("creator", key);
    let resv = reserved(cp, pool, &req).await;
    commit_lease(cp, pool, &resv, slot_id).await
}

/// Releases a lease that must still be held.
pub async fn release(cp: &ControlPlane, pool: &ServerId, lease_id: &str) {
    let changed = cp.release(pool, lease_id, Outcome::default()).await.expect("release");
    assert!(changed.changed, "lease {lease_id} was not held");
}

/// Grows an empty pool (shared isolation, no keys) to `n` idle slots named `{prefix}{i}`: acquires
/// and holds until `n` slots exist, committing every reservation, then releases everything.
/// Returns the slots in creation (`seq`) order.
pub async fn warm(cp: &ControlPlane, pool: &ServerId, n: usize, prefix: &str) -> Vec<SlotRecord> {
    let mut held = Vec::new();
    let mut created = 0;
    while created < n {
        let req = AcquireRequest::new("warmer", None);
        match cp.try_acquire(pool, &req).await.expect("warm-up attempt") {
            Attempt::Leased(lease) => held.push(lease.id),
            Attempt::Create(resv) => {
                let lease = commit_lease(cp, pool, &resv, &format!("{prefix}{created}")).await;
                held.push(lease.id);
                created += 1;
            }
            Attempt::Wait { in_use, limit } => panic!("warm-up of {n} slots had to wait at {in_use}/{limit}"),
        }
    }
    for id in held {
        release(cp, pool, &id).await;
    }
    let slots = cp.slots(pool).await.expect("slots");
    assert_eq!(slots.len(), n, "{slots:?}");
    assert!(slots.iter().all(|s| s.leases == 0), "{slots:?}");
    slots
}

/// Runs the futures as separate tasks at once; the outputs in input order.
pub async fn concurrently<T, F>(futures: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

/// A tiny seeded PRNG (splitmix64): reproducible random choices without another crate.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
