//! The pool invariants of SPEC §4 that a single pool can show: I1 (max size, reservations
//! included), I2 (session capacity), I3 (idempotent release), I4 (dead holders and idle bindings
//! are reclaimed), I8 (session isolation) and I11 (re-sent acquire/commit); and that every slot
//! leaving the pool is reported to a caller so that its upstream session gets closed.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use poolgate_control::{AcquireRequest, Attempt, Committed, ControlError, Outcome, PoolSpec, SlotState};
use poolgate_shared::domain::pool::{Isolation, Strategy};

use crate::harness::{
    commit_lease, concurrently, create_slot, leased, meta, pool_id, release, reserved, spec, warm, Backend, Plane,
};

/// Sleeps past a TTL of `ttl_ms`: the event under test is the passing of time itself.
async fn past(ttl_ms: u64) {
    tokio::time::sleep(Duration::from_millis(ttl_ms + 100)).await;
}

/// I1: twelve first attempts from three nodes at once get exactly `max` reservations; once the
/// slots exist and are held, everyone waits; a release lets exactly one more in.
async fn max_size_counts_reservations_across_nodes(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(3).await;
    let pool = pool_id();
    nodes[0]
        .sync(&pool, &spec(Strategy::RoundRobin, 3))
        .await
        .expect("sync");

    let attempts = |round: &'static str| {
        (0..12)
            .map(|i| {
                let cp = nodes[i % 3].clone();
                let pool = pool.clone();
                async move {
                    let req = AcquireRequest::new(&format!("node-{}-{round}", i % 3), None);
                    cp.try_acquire(&pool, &req).await.expect("attempt")
                }
            })
            .collect::<Vec<_>>()
    };
    let first = concurrently(attempts("first")).await;
    let resvs: Vec<_> = first
        .iter()
        .filter_map(|a| match a {
            Attempt::Create(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resvs.len(), 3, "exactly max reservations: {first:?}");
    for a in &first {
        assert!(
            matches!(a, Attempt::Create(_) | Attempt::Wait { in_use: 3, limit: 3 }),
            "reservations count toward max (I1): {a:?}"
        );
    }
    let stats = nodes[1].stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.reservations), (0, 3));

    let mut leases = Vec::new();
    for (i, r) in resvs.iter().enumerate() {
        leases.push(commit_lease(&nodes[i % 3], &pool, r, &format!("slot-{i}")).await);
    }
    let second = concurrently(attempts("second")).await;
    assert!(
        second
            .iter()
            .all(|a| matches!(a, Attempt::Wait { in_use: 3, limit: 3 })),
        "a full pool makes everyone wait: {second:?}"
    );
    let stats = nodes[2].stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.reservations, stats.leases), (3, 0, 3));

    release(&nodes[2], &pool, &leases[1].id).await;
    let third = concurrently(attempts("third")).await;
    let granted: Vec<_> = third
        .iter()
        .filter_map(|a| match a {
            Attempt::Leased(l) => Some(l.slot.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(granted, vec!["slot-1".to_owned()], "one release, one lease: {third:?}");
    let stats = nodes[0].stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.reservations, stats.leases), (3, 0, 3));
}

/// I2: a slot with capacity 3 takes exactly three concurrent leases, from any node.
async fn capacity_bounds_concurrent_leases_per_slot(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(3).await;
    let pool = pool_id();
    let cfg = PoolSpec {
        capacity: 3,
        ..spec(Strategy::LeastConnections, 1)
    };
    nodes[0].sync(&pool, &cfg).await.expect("sync");
    let first = create_slot(&nodes[0], &pool, None, "only").await;
    assert_eq!(first.slot.leases, 1);

    let attempts = (0..6)
        .map(|i| {
            let cp = nodes[i % 3].clone();
            let pool = pool.clone();
            async move {
                cp.try_acquire(&pool, &AcquireRequest::new("n", None))
                    .await
                    .expect("attempt")
            }
        })
        .collect();
    let results = concurrently(attempts).await;
    let granted: Vec<_> = results
        .iter()
        .filter_map(|a| match a {
            Attempt::Leased(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(granted.len(), 2, "capacity 3 minus the one held: {results:?}");
    assert!(granted.iter().all(|l| l.slot.id == "only" && l.slot.leases <= 3));
    assert_eq!(results.iter().filter(|a| matches!(a, Attempt::Wait { .. })).count(), 4);
    let slots = nodes[1].slots(&pool).await.expect("slots");
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].leases, 3, "I2");
    assert_eq!(nodes[1].stats(&pool).await.expect("stats").leases, 3);

    release(&nodes[2], &pool, &granted[0].id).await;
    assert_eq!(nodes[2].slots(&pool).await.expect("slots")[0].leases, 2);
    let again = leased(&nodes[1], &pool, &AcquireRequest::new("n", None)).await;
    assert_eq!((again.slot.id.as_str(), again.slot.leases), ("only", 3));
    assert!(matches!(
        nodes[0].try_acquire(&pool, &AcquireRequest::new("n", None)).await,
        Ok(Attempt::Wait { .. })
    ));
}

/// I3: releasing an unknown lease, or one already released, changes nothing at all — not even
/// the counters, whatever outcome it reports.
async fn release_is_idempotent(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let other = plane.node().await;
    let pool = pool_id();
    cp.sync(&pool, &spec(Strategy::RoundRobin, 2)).await.expect("sync");
    warm(&cp, &pool, 2, "s").await;
    let held = leased(&cp, &pool, &AcquireRequest::new("a", None)).await;
    let loud = Outcome {
        latency_ms: Some(5_000),
        error: true,
        retire: true,
        ..Outcome::default()
    };

    let before = (
        cp.stats(&pool).await.expect("stats"),
        cp.slots(&pool).await.expect("slots"),
    );
    let unknown = other.release(&pool, "no-such-lease", loud).await.expect("release");
    assert!(!unknown.changed && unknown.closed.is_empty(), "{unknown:?}");
    assert_eq!(other.renew(&pool, "no-such-lease").await.expect("renew"), None);
    let after = (
        cp.stats(&pool).await.expect("stats"),
        cp.slots(&pool).await.expect("slots"),
    );
    assert_eq!(before, after, "an unknown lease changed the pool");

    let first = cp
        .release(
            &pool,
            &held.id,
            Outcome {
                latency_ms: Some(10),
                ..Outcome::default()
            },
        )
        .await
        .expect("release");
    assert!(first.changed && first.closed.is_empty(), "{first:?}");
    let mid = (
        cp.stats(&pool).await.expect("stats"),
        cp.slots(&pool).await.expect("slots"),
    );
    assert_eq!((mid.0.leases, mid.0.releases, mid.0.errors), (0, 3, 0));
    for cp in [&cp, &other] {
        let again = cp.release(&pool, &held.id, loud).await.expect("release again");
        assert!(!again.changed && again.closed.is_empty(), "{again:?}");
        assert_eq!(cp.renew(&pool, &held.id).await.expect("renew"), None);
    }
    let end = (
        cp.stats(&pool).await.expect("stats"),
        cp.slots(&pool).await.expect("slots"),
    );
    assert_eq!(mid, end, "a double release changed the pool");
    assert!(end.1.iter().all(|s| s.state == SlotState::Ready && s.error_rate == 0.0));
}

/// I4: a lease whose holder died (never released) ends after its TTL at the next acquire, from
/// any node; its late release changes nothing.
async fn crashed_lease_is_reclaimed_by_next_acquire(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    let cfg = PoolSpec {
        lease_ttl_ms: 200,
        ..spec(Strategy::RoundRobin, 1)
    };
    nodes[0].sync(&pool, &cfg).await.expect("sync");
    let crashed = create_slot(&nodes[0], &pool, None, "s0").await;
    let waiting = nodes[1].try_acquire(&pool, &AcquireRequest::new("b", None)).await;
    assert!(
        matches!(waiting, Ok(Attempt::Wait { in_use: 1, limit: 1 })),
        "{waiting:?}"
    );
    let early = nodes[1].reclaim(&pool, 100).await.expect("reclaim");
    assert_eq!((early.leases, early.reservations), (0, 0), "reclaimed before its TTL");

    past(cfg.lease_ttl_ms).await;
    let lease = leased(&nodes[1], &pool, &AcquireRequest::new("b", None)).await;
    assert_eq!(lease.slot.id, "s0");
    assert_eq!(lease.slot.leases, 1, "the dead lease no longer counts");
    let stats = nodes[1].stats(&pool).await.expect("stats");
    assert_eq!((stats.leases, stats.expired, stats.slots), (1, 1, 1));

    let late = nodes[0]
        .release(&pool, &crashed.id, Outcome::default())
        .await
        .expect("late release");
    assert!(!late.changed, "I3 after I4");
    assert_eq!(nodes[0].renew(&pool, &crashed.id).await.expect("renew"), None);
    assert_eq!(nodes[0].slots(&pool).await.expect("slots")[0].leases, 1);
}

/// I4: the coordinator's reclaim pass ends dead leases too, and capacity comes back.
async fn crashed_lease_is_reclaimed_by_reclaim(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    let cfg = PoolSpec {
        lease_ttl_ms: 400,
        ..spec(Strategy::LeastConnections, 2)
    };
    nodes[0].sync(&pool, &cfg).await.expect("sync");
    warm(&nodes[0], &pool, 2, "s").await;
    let a = leased(&nodes[0], &pool, &AcquireRequest::new("a", None)).await;
    let b = leased(&nodes[0], &pool, &AcquireRequest::new("a", None)).await;
    assert_ne!(a.slot.id, b.slot.id);
    // One of them is kept alive by a renewal; the other's holder dies. At ~500 ms `a` (expired at
    // 400) is dead and `b` (renewed at ~250 until ~650) is not.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(nodes[0].renew(&pool, &b.id).await.expect("renew").is_some());
    tokio::time::sleep(Duration::from_millis(250)).await;

    let r = nodes[1].reclaim(&pool, 100).await.expect("reclaim");
    assert_eq!((r.leases, r.bindings, r.reservations), (1, 0, 0), "{r:?}");
    assert!(r.closed.is_empty());
    let stats = nodes[1].stats(&pool).await.expect("stats");
    assert_eq!((stats.leases, stats.available, stats.expired), (1, 1, 1));
    let slots = nodes[1].slots(&pool).await.expect("slots");
    let load: HashMap<_, _> = slots.iter().map(|s| (s.id.as_str(), s.leases)).collect();
    assert_eq!((load[a.slot.id.as_str()], load[b.slot.id.as_str()]), (0, 1));
    let again = leased(&nodes[1], &pool, &AcquireRequest::new("b", None)).await;
    assert_eq!(again.slot.id, a.slot.id, "the dead lease's capacity is back");
    assert!(
        !nodes[0]
            .release(&pool, &a.id, Outcome::default())
            .await
            .expect("release")
            .changed
    );
    release(&nodes[0], &pool, &b.id).await;
}

/// I4 and I1: a reservation whose creator died stops counting toward max after its TTL, both at
/// the next acquire and in a reclaim pass; its late commit is refused.
async fn abandoned_reservation_is_reclaimed(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    let cfg = PoolSpec {
        reservation_ttl_ms: 200,
        ..spec(Strategy::RoundRobin, 1)
    };
    nodes[0].sync(&pool, &cfg).await.expect("sync");

    let dead = reserved(&nodes[0], &pool, &AcquireRequest::new("a", None)).await;
    let waiting = nodes[1].try_acquire(&pool, &AcquireRequest::new("b", None)).await;
    assert!(
        matches!(waiting, Ok(Attempt::Wait { in_use: 1, limit: 1 })),
        "{waiting:?}"
    );
    past(cfg.reservation_ttl_ms).await;
    let fresh = reserved(&nodes[1], &pool, &AcquireRequest::new("b", None)).await;
    assert_eq!(nodes[1].stats(&pool).await.expect("stats").reservations, 1);
    assert!(matches!(
        nodes[0].commit(&pool, &dead.id, "late", &meta("late")).await,
        Err(ControlError::ReservationGone)
    ));
    assert!(!nodes[0].abort(&pool, &dead.id).await.expect("abort"));
    let stats = nodes[0].stats(&pool).await.expect("stats");
    assert_eq!(
        (stats.slots, stats.reservations),
        (0, 1),
        "the late commit added nothing"
    );

    // The live reservation is abandoned too; this time the reclaim pass ends it.
    past(cfg.reservation_ttl_ms).await;
    let r = nodes[0].reclaim(&pool, 100).await.expect("reclaim");
    assert_eq!((r.leases, r.bindings, r.reservations), (0, 0, 1), "{r:?}");
    assert_eq!(nodes[0].stats(&pool).await.expect("stats").reservations, 0);
    let resv = reserved(&nodes[0], &pool, &AcquireRequest::new("c", None)).await;
    commit_lease(&nodes[0], &pool, &resv, "s0").await;
    assert!(matches!(
        nodes[1].commit(&pool, &fresh.id, "late", &meta("late")).await,
        Err(ControlError::ReservationGone)
    ));
    let stats = nodes[0].stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.reservations, stats.leases), (1, 0, 1));
}

/// I11: a re-sent acquire or commit (same id, any node, even concurrently) returns the same
/// reservation or lease and never takes a second one.
async fn resent_acquire_and_commit_are_idempotent(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(3).await;
    let pool = pool_id();
    nodes[0]
        .sync(&pool, &spec(Strategy::RoundRobin, 3))
        .await
        .expect("sync");

    let req = AcquireRequest::new("a", None);
    let resv = reserved(&nodes[0], &pool, &req).await;
    assert_eq!(reserved(&nodes[1], &pool, &req).await, resv);
    assert_eq!(nodes[1].stats(&pool).await.expect("stats").reservations, 1);
    let lease = commit_lease(&nodes[0], &pool, &resv, "s0").await;
    let recommitted = commit_lease(&nodes[2], &pool, &resv, "s0").await;
    assert_eq!(recommitted, lease, "re-sent commit");
    let again = leased(&nodes[1], &pool, &req).await;
    assert_eq!(
        (
            again.id.as_str(),
            again.slot.id.as_str(),
            again.expires_ms,
            again.slot.leases
        ),
        (lease.id.as_str(), "s0", lease.expires_ms, 1),
        "re-sent acquire after the commit"
    );
    let stats = nodes[2].stats(&pool).await.expect("stats");
    assert_eq!(
        (
            stats.slots,
            stats.reservations,
            stats.leases,
            stats.creates,
            stats.acquisitions
        ),
        (1, 0, 1, 1, 1)
    );

    // The same id from three nodes at once: one reservation.
    let req2 = AcquireRequest::new("b", None);
    let sends = (0..6)
        .map(|i| {
            let (cp, pool, req) = (nodes[i % 3].clone(), pool.clone(), req2.clone());
            async move { cp.try_acquire(&pool, &req).await.expect("attempt") }
        })
        .collect();
    let results = concurrently(sends).await;
    assert!(results.iter().all(|a| a == &results[0]), "{results:?}");
    let Attempt::Create(resv2) = &results[0] else {
        panic!("expected a reservation: {results:?}")
    };
    assert_eq!(nodes[0].stats(&pool).await.expect("stats").reservations, 1);
    let lease2 = commit_lease(&nodes[1], &pool, resv2, "s1").await;
    release(&nodes[1], &pool, &lease2.id).await;

    // A lease granted on an existing slot, re-sent at once from every node.
    let req3 = AcquireRequest::new("c", None);
    let sends = (0..6)
        .map(|i| {
            let (cp, pool, req) = (nodes[i % 3].clone(), pool.clone(), req3.clone());
            async move { cp.try_acquire(&pool, &req).await.expect("attempt") }
        })
        .collect();
    let results = concurrently(sends).await;
    let ids: BTreeSet<_> = results
        .iter()
        .map(|a| match a {
            Attempt::Leased(l) => (l.id.clone(), l.slot.id.clone(), l.expires_ms),
            other => panic!("expected the same lease everywhere: {other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    let stats = nodes[0].stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.leases, stats.acquisitions), (2, 2, 3));
}

fn session_spec(max: u32) -> PoolSpec {
    PoolSpec {
        isolation: Isolation::Session,
        ..spec(Strategy::RoundRobin, max)
    }
}

/// I8: every key gets an upstream session of its own, reached from every node; a slot that was
/// bound is never handed to another key, even when idle; unbinding retires it for good.
async fn session_isolation_binds_one_key_per_slot(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(3).await;
    let pool = pool_id();
    nodes[0].sync(&pool, &session_spec(8)).await.expect("sync");
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    let k1 = create_slot(a, &pool, Some("k1"), "s-k1").await;
    assert!(k1.fresh);
    assert_eq!((k1.slot.used, k1.slot.bindings, k1.slot.leases), (1, 1, 1));
    let k2 = create_slot(b, &pool, Some("k2"), "s-k2").await;
    release(c, &pool, &k1.id).await;
    // The same key from another node reaches the same upstream session.
    for cp in [b, c, a] {
        let again = leased(cp, &pool, &AcquireRequest::new("x", Some("k1"))).await;
        assert_eq!((again.slot.id.as_str(), again.fresh), ("s-k1", false));
        release(cp, &pool, &again.id).await;
    }
    // An idle slot bound to k1 is never handed to k3.
    let k3 = create_slot(c, &pool, Some("k3"), "s-k3").await;
    release(c, &pool, &k3.id).await;

    // A warm slot (no key) goes to exactly one of two keys racing for it.
    let warm = create_slot(a, &pool, None, "s-warm").await;
    assert_eq!((warm.slot.used, warm.slot.bindings), (0, 0));
    release(a, &pool, &warm.id).await;
    let race = concurrently(
        [("k4", b), ("k5", c)]
            .into_iter()
            .map(|(key, cp)| {
                let (cp, pool) = (cp.clone(), pool.clone());
                async move { (key, cp.try_acquire(&pool, &AcquireRequest::new("n", Some(key))).await) }
            })
            .collect(),
    )
    .await;
    let mut slot_of: HashMap<&str, String> = HashMap::new();
    slot_of.insert("k1", "s-k1".into());
    slot_of.insert("k2", "s-k2".into());
    slot_of.insert("k3", "s-k3".into());
    let mut held = HashMap::new();
    for (key, attempt) in race {
        match attempt.expect("attempt") {
            Attempt::Leased(l) => {
                assert_eq!((l.slot.id.as_str(), l.slot.used, l.fresh), ("s-warm", 1, true));
                slot_of.insert(key, l.slot.id.clone());
                held.insert(key, l.id);
            }
            Attempt::Create(r) => {
                let slot = format!("s-{key}");
                let l = commit_lease(a, &pool, &r, &slot).await;
                slot_of.insert(key, slot);
                held.insert(key, l.id);
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    let distinct: BTreeSet<_> = slot_of.values().collect();
    assert_eq!(distinct.len(), 5, "two keys share a slot: {slot_of:?}");
    assert!(
        distinct.contains(&"s-warm".to_owned()),
        "the warm slot was not used: {slot_of:?}"
    );
    let stats = a.stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.bindings, stats.available), (5, 5, 0));

    // Unbinding an idle key closes its slot at once; it is never seen again.
    let unbound = b.unbind(&pool, "k1").await.expect("unbind");
    assert!(unbound.changed);
    assert_eq!(unbound.closed.len(), 1, "{unbound:?}");
    assert_eq!(
        (unbound.closed[0].id.as_str(), unbound.closed[0].state),
        ("s-k1", SlotState::Closed)
    );
    assert!(!b.unbind(&pool, "k1").await.expect("unbind again").changed);
    // Unbinding a busy key retires its slot; it closes on release.
    let busy = c.unbind(&pool, "k2").await.expect("unbind");
    assert!(busy.changed && busy.closed.is_empty(), "{busy:?}");
    let slots = a.slots(&pool).await.expect("slots");
    assert!(!slots.iter().any(|s| s.id == "s-k1"));
    let s_k2 = slots.iter().find(|s| s.id == "s-k2").expect("s-k2 still leased");
    assert_eq!(s_k2.state, SlotState::Retired);
    // New sessions (including one reusing k1's name) never get the old slots.
    for key in ["k6", "k1"] {
        let lease = create_slot(b, &pool, Some(key), &format!("s-{key}-new")).await;
        release(b, &pool, &lease.id).await;
    }
    let closed = a.release(&pool, &k2.id, Outcome::default()).await.expect("release");
    assert!(closed.changed);
    assert_eq!(
        closed.closed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["s-k2"]
    );
    let slots = a.slots(&pool).await.expect("slots");
    assert!(!slots.iter().any(|s| s.id == "s-k1" || s.id == "s-k2"), "{slots:?}");
    assert!(slots.iter().all(|s| s.state == SlotState::Ready), "{slots:?}");
    for (key, id) in held {
        release(a, &pool, &id).await;
        let again = leased(c, &pool, &AcquireRequest::new("n", Some(key))).await;
        assert_eq!(again.slot.id, slot_of[key]);
        release(c, &pool, &again.id).await;
    }
}

/// I8: when the upstream session bound to a key goes away, the key's next acquire fails with
/// BindingLost (the client must start a new session) instead of moving it to another slot.
async fn lost_binding_is_reported(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    nodes[0].sync(&pool, &session_spec(4)).await.expect("sync");
    let (a, b) = (&nodes[0], &nodes[1]);

    // Idle slot marked unhealthy: it closes at once.
    let idle = create_slot(a, &pool, Some("idle"), "s-idle").await;
    release(a, &pool, &idle.id).await;
    let marked = b.mark(&pool, "s-idle", SlotState::Unhealthy).await.expect("mark");
    assert!(marked.changed);
    assert_eq!(
        marked.closed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["s-idle"]
    );
    let lost = b.try_acquire(&pool, &AcquireRequest::new("b", Some("idle"))).await;
    assert!(matches!(lost, Err(ControlError::BindingLost)), "{lost:?}");
    assert_eq!(
        a.stats(&pool).await.expect("stats").bindings,
        0,
        "the dead binding is gone"
    );
    // Busy slot marked unhealthy: it stays until released, but its key is lost already.
    let busy = create_slot(a, &pool, Some("busy"), "s-busy").await;
    assert!(b
        .mark(&pool, "s-busy", SlotState::Unhealthy)
        .await
        .expect("mark")
        .closed
        .is_empty());
    let lost = b.try_acquire(&pool, &AcquireRequest::new("b", Some("busy"))).await;
    assert!(matches!(lost, Err(ControlError::BindingLost)), "{lost:?}");
    let closed = a.release(&pool, &busy.id, Outcome::default()).await.expect("release");
    assert_eq!(
        closed.closed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["s-busy"]
    );
    // Starting over with the same key is a new session on a new slot.
    let again = create_slot(b, &pool, Some("idle"), "s-idle-2").await;
    assert_eq!(again.slot.bindings, 1);
    let stats = a.stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.bindings, stats.leases), (1, 1, 1));
}

/// I8 and I4: two nodes receiving the first requests of one downstream session at once must
/// not leave it bound to two upstream sessions, one of which nobody could ever end.
async fn racing_first_acquires_for_one_key_bind_one_slot(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    nodes[0].sync(&pool, &session_spec(4)).await.expect("sync");

    // Both nodes ask before either has created its upstream session.
    let reqs = [AcquireRequest::new("a", Some("k")), AcquireRequest::new("b", Some("k"))];
    let mut attempts = Vec::new();
    for (cp, req) in nodes.iter().zip(&reqs) {
        attempts.push(cp.try_acquire(&pool, req).await.expect("attempt"));
    }
    let mut leases = Vec::new();
    for (i, attempt) in attempts.into_iter().enumerate() {
        match attempt {
            Attempt::Create(r) => match nodes[i].commit(&pool, &r.id, &format!("s{i}"), &meta("s")).await {
                Ok(Committed::Leased(l)) => leases.push(l),
                Ok(other) => panic!("commit of an acquire's reservation: {other:?}"),
                Err(e) => assert!(matches!(e, ControlError::ReservationGone), "{e:?}"),
            },
            Attempt::Leased(l) => leases.push(l),
            Attempt::Wait { .. } => {}
        }
    }
    let bound: BTreeSet<_> = leases.iter().map(|l| l.slot.id.clone()).collect();
    let slots = nodes[0].slots(&pool).await.expect("slots");
    let stats = nodes[0].stats(&pool).await.expect("stats");
    let bindings: u64 = slots.iter().map(|s| u64::from(s.bindings)).sum();
    assert_eq!(
        bound.len(),
        1,
        "one key was served by two upstream sessions: {leases:?}"
    );
    assert_eq!(
        bindings, stats.bindings,
        "slot binding counts disagree with the bindings: {slots:?}"
    );

    for l in &leases {
        nodes[1]
            .release(&pool, &l.id, Outcome::default())
            .await
            .expect("release");
    }
    assert!(nodes[1].unbind(&pool, "k").await.expect("unbind").changed);
    let stats = nodes[0].stats(&pool).await.expect("stats");
    let slots = nodes[0].slots(&pool).await.expect("slots");
    assert_eq!((stats.bindings, stats.leases), (0, 0));
    assert!(
        slots
            .iter()
            .all(|s| s.state == SlotState::Ready && s.used == 0 && s.bindings == 0),
        "once the key's binding ended, a slot is left that no one can ever use or end (capacity lost for good): \
         {slots:?}"
    );
}

/// I4 for bindings: a binding unused for its idle TTL ends (in session isolation its slot is
/// retired and reported closed); `touch` keeps it alive for another TTL.
async fn idle_binding_ends_unless_touched(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    let cfg = PoolSpec {
        idle_ttl_ms: 400,
        ..session_spec(4)
    };
    nodes[0].sync(&pool, &cfg).await.expect("sync");
    let lease = create_slot(&nodes[0], &pool, Some("k"), "s-k").await;
    release(&nodes[0], &pool, &lease.id).await;
    assert!(!nodes[1].touch(&pool, "nobody").await.expect("touch"));

    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(nodes[1].touch(&pool, "k").await.expect("touch"));
    // ~500 ms: past the first idle TTL, within the one the touch started (~650).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r = nodes[1].reclaim(&pool, 100).await.expect("reclaim");
    assert_eq!(
        (r.bindings, r.closed.len()),
        (0, 0),
        "a touched binding was reclaimed: {r:?}"
    );
    // ~800 ms: idle past the renewed TTL.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = nodes[1].reclaim(&pool, 100).await.expect("reclaim");
    assert_eq!(r.bindings, 1, "{r:?}");
    assert_eq!(
        r.closed.iter().map(|s| (s.id.as_str(), s.state)).collect::<Vec<_>>(),
        vec![("s-k", SlotState::Closed)],
        "the ended session's upstream session must be closed"
    );
    let stats = nodes[0].stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.bindings), (0, 0));
    assert!(!nodes[1].touch(&pool, "k").await.expect("touch"));
}

/// Every slot that leaves the pool is handed to exactly one caller in a `closed` list, so that
/// its upstream session gets closed (SPEC §3: an ended session is closed with DELETE) — also
/// when the removal happens inside an acquire's own reclaim pass.
async fn every_removed_slot_is_reported_for_closing(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    let cfg = PoolSpec {
        idle_ttl_ms: 200,
        lease_ttl_ms: 200,
        ..session_spec(4)
    };
    nodes[0].sync(&pool, &cfg).await.expect("sync");
    let mut reported = 0;
    // A session whose binding idles out, and a slot retired while leased whose holder dies.
    let idle = create_slot(&nodes[0], &pool, Some("idle"), "s-idle").await;
    reported += nodes[0]
        .release(&pool, &idle.id, Outcome::default())
        .await
        .expect("release")
        .closed
        .len();
    let _crashed = create_slot(&nodes[0], &pool, None, "s-retired").await;
    reported += nodes[0]
        .mark(&pool, "s-retired", SlotState::Retired)
        .await
        .expect("mark")
        .closed
        .len();
    assert_eq!(reported, 0);

    past(200).await;
    // The next acquire (another session arriving) runs its reclaim pass first.
    let other = create_slot(&nodes[1], &pool, Some("other"), "s-other").await;
    reported += nodes[1]
        .release(&pool, &other.id, Outcome::default())
        .await
        .expect("release")
        .closed
        .len();
    let r = nodes[1].reclaim(&pool, 100).await.expect("reclaim");
    reported += r.closed.len();
    let stats = nodes[0].stats(&pool).await.expect("stats");
    assert_eq!(stats.slots, 1, "{:?}", nodes[0].slots(&pool).await);
    assert_eq!(
        stats.destroys, reported as u64,
        "{} slots left the pool but only {reported} were reported to a caller: the others' upstream \
         sessions are never closed",
        stats.destroys
    );
}

/// I1 after a lowered max: the sync retires the slots beyond it, idle ones first (deleted at
/// once), so the pool is back under the new max without cutting a call; when only busy slots are
/// beyond it, they retire and leave as their calls end.
async fn a_lowered_max_retires_the_slots_beyond_it(backend: Backend) {
    let cp = Plane::new(backend).node().await;
    let pool = pool_id();
    cp.sync(&pool, &spec(Strategy::LeastConnections, 4))
        .await
        .expect("sync");
    let slots = warm(&cp, &pool, 4, "s").await;
    let first = leased(&cp, &pool, &AcquireRequest::new("node", None)).await;
    let second = leased(&cp, &pool, &AcquireRequest::new("node", None)).await;
    let busy = [first.slot.id.clone(), second.slot.id.clone()];
    let synced = cp
        .sync(&pool, &spec(Strategy::LeastConnections, 1))
        .await
        .expect("lower max");
    assert!(synced.changed);
    let ids = |v: Vec<poolgate_control::SlotRecord>| v.into_iter().map(|s| s.id).collect::<BTreeSet<_>>();
    let left = ids(cp.slots(&pool).await.expect("slots"));
    assert_eq!(
        left,
        busy.iter().cloned().collect(),
        "the idle extras left at once, the busy ones stay"
    );
    let reclaimed = cp.reclaim(&pool, 100).await.expect("reclaim");
    assert_eq!(
        reclaimed.closed.len(),
        2,
        "the removed slots are handed out to be closed"
    );
    // Two busy slots for a max of 1: the older one retired, and leaves when its call ends.
    release(&cp, &pool, &first.id).await;
    release(&cp, &pool, &second.id).await;
    let left = ids(cp.slots(&pool).await.expect("slots"));
    assert_eq!(left.len(), 1, "under the new max once the calls ended: {left:?}");
    assert!(slots.iter().any(|s| left.contains(&s.id)));
}

crate::on_every_backend!(
    a_lowered_max_retires_the_slots_beyond_it,
    max_size_counts_reservations_across_nodes,
    capacity_bounds_concurrent_leases_per_slot,
    release_is_idempotent,
    crashed_lease_is_reclaimed_by_next_acquire,
    crashed_lease_is_reclaimed_by_reclaim,
    abandoned_reservation_is_reclaimed,
    resent_acquire_and_commit_are_idempotent,
    session_isolation_binds_one_key_per_slot,
    lost_binding_is_reported,
    racing_first_acquires_for_one_key_bind_one_slot,
    idle_binding_ends_unless_touched,
    every_removed_slot_is_reported_for_closing,
);
