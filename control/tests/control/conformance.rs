//! The conformance suite: the same assertions on every backend. Basic lease life cycle,
//! configuration (sync), waiting for a release; the invariants, strategies, leader election and
//! concurrency properties have their own modules.

use std::time::{Duration, Instant};

use poolgate_control::{
    AcquireRequest, Acquired, Attempt, Committed, ControlError, ControlPlane, Outcome, PoolSpec, SlotMeta,
};
use poolgate_shared::domain::pool::Strategy;

use crate::harness::{create_slot, leased, pool_id, release, spec, warm, Backend, Plane};

/// Create a slot through a reservation, lease it, release it, and see it reused.
async fn lease_create_commit_release_reuse(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    let req = AcquireRequest::new("node-a", None);
    assert!(matches!(
        cp.try_acquire(&pool, &req).await,
        Err(ControlError::NotConfigured)
    ));
    cp.sync(&pool, &spec(Strategy::RoundRobin, 2)).await.expect("sync");

    let Attempt::Create(resv) = cp.try_acquire(&pool, &req).await.expect("attempt") else {
        panic!("expected a reservation")
    };
    assert_eq!(resv.id, req.lease_id);
    let meta = SlotMeta {
        session_id: Some("up-1".into()),
        protocol_version: Some("2025-11-25".into()),
        endpoint: None,
        init: None,
    };
    let Committed::Leased(lease) = cp.commit(&pool, &resv.id, "slot-1", &meta).await.expect("commit") else {
        panic!("expected a lease")
    };
    assert_eq!(
        (lease.id.as_str(), lease.slot.id.as_str(), lease.slot.leases),
        (req.lease_id.as_str(), "slot-1", 1)
    );
    assert_eq!(lease.slot.meta, meta);
    assert!(lease.fresh);

    let released = cp
        .release(
            &pool,
            &lease.id,
            Outcome {
                latency_ms: Some(12),
                ..Default::default()
            },
        )
        .await
        .expect("release");
    assert!(released.changed);
    assert!(
        !cp.release(&pool, &lease.id, Outcome::default())
            .await
            .expect("again")
            .changed,
        "I3"
    );

    let again = AcquireRequest::new("node-a", None);
    let Attempt::Leased(reused) = cp.try_acquire(&pool, &again).await.expect("attempt") else {
        panic!("expected reuse")
    };
    assert_eq!(reused.slot.id, "slot-1");
    assert_eq!(reused.slot.reuse_count, 2);
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!(
        (
            stats.slots,
            stats.leases,
            stats.creates,
            stats.acquisitions,
            stats.releases
        ),
        (1, 1, 1, 2, 1)
    );
    let acquired = cp
        .acquire(&pool, &again, std::time::Duration::from_secs(1))
        .await
        .expect("idempotent");
    assert_eq!(
        acquired,
        Acquired::Leased(reused.clone()),
        "re-sent acquire returns the same lease (I11)"
    );
}

/// Before its first sync a pool is unknown: calls that need its configuration fail with
/// NotConfigured (at once, without waiting), read-only and idempotent ones change nothing.
async fn not_configured_until_synced(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    let req = AcquireRequest::new("n", None);
    assert!(matches!(
        cp.try_acquire(&pool, &req).await,
        Err(ControlError::NotConfigured)
    ));
    let started = Instant::now();
    let waited = cp.acquire(&pool, &req, Duration::from_secs(2)).await;
    assert!(matches!(waited, Err(ControlError::NotConfigured)), "{waited:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "NotConfigured must not wait"
    );
    let committed = cp.commit(&pool, &req.lease_id, "s", &SlotMeta::default()).await;
    assert!(matches!(committed, Err(ControlError::NotConfigured)), "{committed:?}");
    assert!(
        !cp.release(&pool, "x", Outcome::default())
            .await
            .expect("release")
            .changed
    );
    assert_eq!(cp.renew(&pool, "x").await.expect("renew"), None);
    assert!(!cp.stats(&pool).await.expect("stats").configured);
    assert!(cp.slots(&pool).await.expect("slots").is_empty());
    assert!(!cp.pools().await.expect("pools").contains(&pool));

    let g1 = cp.sync(&pool, &spec(Strategy::RoundRobin, 2)).await.expect("sync");
    let g2 = cp
        .sync(&pool, &spec(Strategy::RoundRobin, 2))
        .await
        .expect("sync again");
    assert!(
        g1.changed && !g2.changed,
        "an unchanged sync writes nothing: {g1:?} then {g2:?}"
    );
    assert_eq!(g2.generation, g1.generation);
    let g3 = cp
        .sync(&pool, &spec(Strategy::RoundRobin, 3))
        .await
        .expect("sync a change");
    assert!(
        g3.changed && g3.generation > g1.generation,
        "a change is a new generation: {g1:?} then {g3:?}"
    );
    assert!(cp.stats(&pool).await.expect("stats").configured);
    let other = plane.node().await;
    assert!(
        other.pools().await.expect("pools").contains(&pool),
        "every node sees the synced pool"
    );
    assert!(matches!(other.try_acquire(&pool, &req).await, Ok(Attempt::Create(_))));
}

/// A sync that changes capacity, strategy or weights rebuilds the selection of existing slots.
async fn sync_rebuilds_selection(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    let base = spec(Strategy::RoundRobin, 2);
    cp.sync(&pool, &base).await.expect("sync");
    let slots = warm(&cp, &pool, 2, "s").await;
    let first = leased(&cp, &pool, &AcquireRequest::new("n", None)).await;
    let second = leased(&cp, &pool, &AcquireRequest::new("n", None)).await;
    assert_eq!(
        (first.slot.id.as_str(), second.slot.id.as_str()),
        (slots[0].id.as_str(), slots[1].id.as_str())
    );
    assert!(matches!(
        cp.try_acquire(&pool, &AcquireRequest::new("n", None)).await,
        Ok(Attempt::Wait { .. })
    ));

    // Capacity 1 -> 2: the held slots take a second lease.
    let cap2 = PoolSpec { capacity: 2, ..base };
    cp.sync(&pool, &cap2).await.expect("sync");
    let third = leased(&cp, &pool, &AcquireRequest::new("n", None)).await;
    release(&cp, &pool, &third.id).await;
    release(&cp, &pool, &second.id).await;
    // Now s0 has one lease, s1 none. round_robin -> least_connections: s1, whatever the cursor.
    let lc = PoolSpec {
        strategy: Strategy::LeastConnections,
        ..cap2.clone()
    };
    cp.sync(&pool, &lc).await.expect("sync");
    for _ in 0..2 {
        let pick = leased(&cp, &pool, &AcquireRequest::new("n", None)).await;
        assert_eq!(pick.slot.id, slots[1].id, "least connections after the switch");
        release(&cp, &pool, &pick.id).await;
    }
    // -> sticky: a new key is bound to an existing slot (not made to wait at max).
    let sticky = PoolSpec {
        strategy: Strategy::Sticky,
        ..cap2.clone()
    };
    cp.sync(&pool, &sticky).await.expect("sync");
    let bound = leased(&cp, &pool, &AcquireRequest::new("n", Some("user"))).await;
    assert_eq!(bound.slot.bindings, 1);
    release(&cp, &pool, &bound.id).await;
    // New endpoint weights reach the existing slots.
    let weighted = PoolSpec {
        strategy: Strategy::Weighted,
        endpoint_weights: vec![5],
        ..cap2
    };
    cp.sync(&pool, &weighted).await.expect("sync");
    let after = cp.slots(&pool).await.expect("slots");
    assert!(after.iter().all(|s| s.weight == 5.0), "{after:?}");
    let pick = leased(&cp, &pool, &AcquireRequest::new("n", None)).await;
    release(&cp, &pool, &pick.id).await;
    release(&cp, &pool, &first.id).await;
}

/// A waiter on one node wakes as soon as another node releases: well before the 500 ms re-check.
async fn waiter_wakes_on_release_from_another_node(backend: Backend) {
    let plane = Plane::new(backend);
    let a = plane.node().await;
    let b = plane.node().await;
    let pool = pool_id();
    a.sync(&pool, &spec(Strategy::RoundRobin, 1)).await.expect("sync");
    let held = create_slot(&a, &pool, None, "only").await;

    let waiter = {
        let (b, pool) = (b.clone(), pool.clone());
        tokio::spawn(async move {
            let got = b
                .acquire(&pool, &AcquireRequest::new("b", None), Duration::from_secs(5))
                .await;
            (got, Instant::now())
        })
    };
    // Nothing observable tells that the waiter is parked: give it time to subscribe and make its
    // first attempt. A re-check would only come at ~500 ms.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let released_at = Instant::now();
    release(&a, &pool, &held.id).await;
    let (got, woke_at) = waiter.await.expect("waiter");
    let Ok(Acquired::Leased(lease)) = got else {
        panic!("the waiter should get the released slot: {got:?}")
    };
    assert_eq!(lease.slot.id, "only");
    let latency = woke_at.duration_since(released_at);
    assert!(
        latency < Duration::from_millis(300),
        "the waiter woke {latency:?} after the release"
    );
}

/// With nothing released, acquire fails with Exhausted after its timeout (±10%), and the timeout
/// is counted.
async fn acquire_times_out_when_nothing_frees_up(backend: Backend) {
    let plane = Plane::new(backend);
    let a = plane.node().await;
    let b = plane.node().await;
    let pool = pool_id();
    a.sync(&pool, &spec(Strategy::RoundRobin, 1)).await.expect("sync");
    create_slot(&a, &pool, None, "only").await;
    let before = b.stats(&pool).await.expect("stats").timeouts;

    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let got = b.acquire(&pool, &AcquireRequest::new("b", None), timeout).await;
    let took = started.elapsed();
    assert!(
        matches!(got, Err(ControlError::Exhausted(t)) if t == timeout),
        "{got:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_millis(1100),
        "timed out after {took:?}"
    );
    assert_eq!(b.stats(&pool).await.expect("stats").timeouts, before + 1);
}

/// Under `none` a session is never leased twice: the control plane retires it when its lease
/// ends (no retire flag needed), unless a client session is bound to it.
async fn none_retires_unbound_sessions_on_release(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    cp.sync(&pool, &spec(Strategy::None, 2)).await.expect("sync");
    let unbound = create_slot(&cp, &pool, None, "s-free").await;
    let bound = create_slot(&cp, &pool, Some("client-1"), "s-bound").await;
    let gone = cp
        .release(&pool, &unbound.id, Outcome::default())
        .await
        .expect("release");
    assert_eq!(
        gone.closed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["s-free"]
    );
    let kept = cp.release(&pool, &bound.id, Outcome::default()).await.expect("release");
    assert!(
        kept.closed.is_empty(),
        "a bound session stays with its client: {kept:?}"
    );
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.bindings), (1, 1), "{stats:?}");
}

crate::on_every_backend!(
    none_retires_unbound_sessions_on_release,
    expiry_is_control_plane_time,
    lease_create_commit_release_reuse,
    not_configured_until_synced,
    sync_rebuilds_selection,
    waiter_wakes_on_release_from_another_node,
    acquire_times_out_when_nothing_frees_up,
);

/// I7, on Redis Cluster only: every key a pool script receives maps to one hash slot — the one
/// `keys::hash_slot` computes — so a script never touches two slots.
mod cluster_keys {
    use fred::interfaces::{ClusterInterface, KeysInterface};
    use poolgate_control::keys::{hash_slot, leader_keys, PoolKeys};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_keys_share_one_cluster_slot() {
        let plane = Plane::new(Backend::Cluster);
        let cp = plane.node().await;
        let ControlPlane::Redis(redis) = &cp else {
            panic!("the cluster backend is a Redis control plane")
        };
        let client = redis.client();
        let pool = pool_id();
        cp.sync(&pool, &spec(Strategy::Sticky, 2)).await.expect("sync");
        let lease = create_slot(&cp, &pool, Some("user"), "s0").await;

        let keys = PoolKeys::new(&plane.prefix, &pool);
        assert_eq!(keys.keys.len(), 14);
        let expected = hash_slot(&keys.keys[0]);
        for key in &keys.keys {
            let slot: u16 = client.cluster_keyslot(key.as_str()).await.expect("CLUSTER KEYSLOT");
            assert_eq!(
                (key.as_str(), slot),
                (key.as_str(), expected),
                "key outside the pool's slot"
            );
            assert_eq!(hash_slot(key), slot, "keys::hash_slot disagrees with Redis for {key}");
        }
        // One multi-key command over all twelve: Redis refuses it (CROSSSLOT) unless they share a
        // slot; after a sync, a commit and a binding most of them exist.
        let existing: i64 = client
            .exists(keys.keys.clone())
            .await
            .expect("EXISTS across the pool's keys");
        assert!(existing >= 8, "only {existing} of the pool's keys exist");
        let leader = leader_keys(&plane.prefix);
        let leader_slot: u16 = client.cluster_keyslot(leader[0].as_str()).await.expect("keyslot");
        let term_slot: u16 = client.cluster_keyslot(leader[1].as_str()).await.expect("keyslot");
        assert_eq!((leader_slot, term_slot), (hash_slot(&leader[0]), hash_slot(&leader[0])));
        release(&cp, &pool, &lease.id).await;
    }
}

/// The control plane's own clock ("now" for every expiry, I5): Redis `TIME`, or the embedded
/// plane's clock.
async fn control_plane_now_ms(cp: &ControlPlane) -> i64 {
    match cp {
        ControlPlane::Embedded(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default(),
        ControlPlane::Redis(r) => {
            use fred::interfaces::ClientLike as _;
            let cmd = fred::types::CustomCommand::new_static("TIME", None, false);
            let t: Vec<String> = r.client().custom(cmd, Vec::<String>::new()).await.expect("TIME");
            let secs: i64 = t[0].parse().expect("seconds");
            let micros: i64 = t[1].parse().expect("micros");
            secs * 1000 + micros / 1000
        }
    }
}

/// I5: every expiry is decided on the control plane's clock. A node cannot pass a time (no API
/// takes one), and the expiry a lease reports is control-plane time + the pool's TTL — whatever
/// the node's own clock says.
async fn expiry_is_control_plane_time(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    let mut s = spec(Strategy::LeastConnections, 2);
    s.lease_ttl_ms = 60_000;
    cp.sync(&pool, &s).await.expect("sync");
    let before = control_plane_now_ms(&cp).await;
    let lease = create_slot(&cp, &pool, None, "slot-t").await;
    let after = control_plane_now_ms(&cp).await;
    assert!(
        lease.expires_ms >= before + 60_000 && lease.expires_ms <= after + 60_000,
        "expiry {} not within control-plane time [{before}, {after}] + 60 s",
        lease.expires_ms
    );
    let renewed = cp.renew(&pool, &lease.id).await.expect("renew").expect("live lease");
    let now = control_plane_now_ms(&cp).await;
    assert!(
        (renewed - (now + 60_000)).abs() < 1_000,
        "renewed to {renewed}, control-plane now {now}"
    );
}
