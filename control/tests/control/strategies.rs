//! The selection strategies of SPEC §3, observed from several nodes: round_robin's fleet-wide
//! cursor, least_connections' minimum, sticky's bounded-load affinity and rebinding, weighted's
//! proportions and determinism.

use std::collections::HashMap;

use poolgate_control::{AcquireRequest, Attempt, ControlPlane, Outcome, PoolSpec, SlotRecord, SlotState};
use poolgate_shared::domain::pool::Strategy;
use poolgate_shared::domain::server::ServerId;

use crate::harness::{commit_lease, concurrently, leased, pool_id, release, reserved, spec, warm, Backend, Plane, Rng};

/// round_robin: consecutive choices from alternating nodes go to consecutive slots (by creation
/// order, wrapping around); busy slots are skipped without losing the order.
async fn round_robin_is_one_fleet_wide_cursor(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    nodes[0]
        .sync(&pool, &spec(Strategy::RoundRobin, 4))
        .await
        .expect("sync");
    let order: Vec<String> = warm(&nodes[0], &pool, 4, "rr")
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();

    let mut picks = Vec::new();
    for i in 0..12 {
        let lease = leased(&nodes[i % 2], &pool, &AcquireRequest::new("n", None)).await;
        picks.push(lease.slot.id.clone());
        release(&nodes[(i + 1) % 2], &pool, &lease.id).await;
    }
    let start = order.iter().position(|id| *id == picks[0]).expect("a known slot");
    let expected: Vec<_> = (0..12).map(|i| order[(start + i) % 4].clone()).collect();
    assert_eq!(picks, expected, "slots by seq: {order:?}");

    // Held leases: the next four picks are the next four slots, then the pool is full.
    let mut held = Vec::new();
    for i in 0..4 {
        let lease = leased(&nodes[i % 2], &pool, &AcquireRequest::new("n", None)).await;
        assert_eq!(lease.slot.id, order[(start + 12 + i) % 4]);
        held.push(lease);
    }
    assert!(matches!(
        nodes[1].try_acquire(&pool, &AcquireRequest::new("n", None)).await,
        Ok(Attempt::Wait { in_use: 4, limit: 4 })
    ));
    // With two freed, the cursor goes on past the last pick, skipping the busy ones.
    release(&nodes[0], &pool, &held[1].id).await;
    release(&nodes[0], &pool, &held[2].id).await;
    let next = leased(&nodes[1], &pool, &AcquireRequest::new("n", None)).await;
    let after = leased(&nodes[0], &pool, &AcquireRequest::new("n", None)).await;
    assert_eq!(
        (next.slot.id.as_str(), after.slot.id.as_str()),
        (held[1].slot.id.as_str(), held[2].slot.id.as_str())
    );
}

/// least_connections: every lease goes to a slot with the fewest active leases fleet-wide.
async fn least_connections_picks_the_minimum(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    let cfg = PoolSpec {
        capacity: 3,
        ..spec(Strategy::LeastConnections, 3)
    };
    nodes[0].sync(&pool, &cfg).await.expect("sync");
    warm(&nodes[0], &pool, 3, "lc").await;

    let mut rng = Rng::new(0x1ea5_7c01_u64);
    let mut held: Vec<String> = Vec::new();
    for step in 0..240 {
        if held.is_empty() || rng.below(100) < 60 {
            let before = nodes[step % 2].slots(&pool).await.expect("slots");
            let min = before.iter().filter(|s| s.leases < 3).map(|s| s.leases).min();
            let attempt = nodes[(step + 1) % 2]
                .try_acquire(&pool, &AcquireRequest::new("n", None))
                .await
                .expect("attempt");
            match attempt {
                Attempt::Leased(lease) => {
                    let had = before
                        .iter()
                        .find(|s| s.id == lease.slot.id)
                        .expect("known slot")
                        .leases;
                    assert_eq!(Some(had), min, "step {step}: picked {} from {before:?}", lease.slot.id);
                    held.push(lease.id);
                }
                Attempt::Wait { .. } => assert_eq!((held.len(), min), (9, None), "step {step}: {before:?}"),
                Attempt::Create(r) => panic!("step {step}: the pool is at max, yet {r:?}"),
            }
        } else {
            let id = held.swap_remove(rng.below(held.len() as u64) as usize);
            release(&nodes[step % 2], &pool, &id).await;
        }
    }
}

fn bindings_bound(slots: &[SlotRecord], c_milli: u64) -> (u64, u64) {
    let total: u64 = slots.iter().map(|s| u64::from(s.bindings)).sum();
    let n = slots.len().max(1) as u64;
    let most = slots.iter().map(|s| u64::from(s.bindings)).max().unwrap_or(0);
    (most, (c_milli * total).div_ceil(1000 * n))
}

async fn sticky_slot(cp: &ControlPlane, pool: &ServerId, key: &str) -> String {
    let lease = leased(cp, pool, &AcquireRequest::new("n", Some(key))).await;
    release(cp, pool, &lease.id).await;
    lease.slot.id
}

/// sticky: a key stays on its slot from every node; no slot holds more than ceil(1.25 × average)
/// bindings; a key whose slot went away (unhealthy, retired) is re-bound and the rebind counted.
async fn sticky_keeps_keys_on_their_slot(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(3).await;
    let pool = pool_id();
    let cfg = PoolSpec {
        capacity: 4,
        ..spec(Strategy::Sticky, 4)
    };
    nodes[0].sync(&pool, &cfg).await.expect("sync");
    warm(&nodes[0], &pool, 4, "st").await;

    let keys: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let mut slot_of: HashMap<String, String> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        slot_of.insert(key.clone(), sticky_slot(&nodes[i % 3], &pool, key).await);
        let slots = nodes[0].slots(&pool).await.expect("slots");
        let (most, bound) = bindings_bound(&slots, 1250);
        assert!(most <= bound, "after {} keys: {most} > {bound}: {slots:?}", i + 1);
    }
    for key in &keys {
        for cp in &nodes {
            assert_eq!(sticky_slot(cp, &pool, key).await, slot_of[key], "{key}");
        }
    }
    let stats = nodes[1].stats(&pool).await.expect("stats");
    assert_eq!((stats.bindings, stats.rebinds, stats.slots), (20, 0, 4));

    let mut rebinds = 0;
    for (state, victim_key) in [(SlotState::Unhealthy, &keys[0]), (SlotState::Retired, &keys[1])] {
        let victim = slot_of[victim_key].clone();
        let marked = nodes[2].mark(&pool, &victim, state).await.expect("mark");
        assert_eq!(
            marked.closed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            vec![victim.as_str()]
        );
        let moved: Vec<String> = keys.iter().filter(|k| slot_of[*k] == victim).cloned().collect();
        assert!(!moved.is_empty());
        for (i, key) in moved.iter().enumerate() {
            let new_slot = sticky_slot(&nodes[i % 3], &pool, key).await;
            assert_ne!(new_slot, victim, "{key} still on its {state:?} slot");
            rebinds += 1;
            assert_eq!(nodes[0].stats(&pool).await.expect("stats").rebinds, rebinds, "{key}");
            for cp in &nodes {
                assert_eq!(sticky_slot(cp, &pool, key).await, new_slot, "{key} after its rebind");
            }
            slot_of.insert(key.clone(), new_slot);
        }
        assert_eq!(
            nodes[0].stats(&pool).await.expect("stats").rebinds,
            rebinds,
            "no spurious rebinds"
        );
        let slots = nodes[0].slots(&pool).await.expect("slots");
        let (most, bound) = bindings_bound(&slots, 1250);
        assert!(
            most <= bound,
            "after rebinding off {victim}: {most} > {bound}: {slots:?}"
        );
        assert_eq!(slots.iter().map(|s| u64::from(s.bindings)).sum::<u64>(), 20);
    }
}

/// sticky: a new key grows the pool when the least-loaded slot is busy and there is room; at
/// max it is bound anyway and waits for its slot, as does a key whose own slot is busy.
async fn sticky_grows_then_waits_for_busy_slot(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    nodes[0].sync(&pool, &spec(Strategy::Sticky, 2)).await.expect("sync");
    warm(&nodes[0], &pool, 1, "g").await;
    let busy = leased(&nodes[0], &pool, &AcquireRequest::new("n", None)).await;

    let resv = reserved(&nodes[1], &pool, &AcquireRequest::new("n", Some("a"))).await;
    let a = commit_lease(&nodes[1], &pool, &resv, "g1").await;
    assert_eq!(a.slot.bindings, 1);
    let b = nodes[0].try_acquire(&pool, &AcquireRequest::new("n", Some("b"))).await;
    assert!(matches!(b, Ok(Attempt::Wait { .. })), "{b:?}");
    let a_again = nodes[0].try_acquire(&pool, &AcquireRequest::new("n", Some("a"))).await;
    assert!(
        matches!(a_again, Ok(Attempt::Wait { .. })),
        "a's slot is busy: {a_again:?}"
    );

    release(&nodes[1], &pool, &busy.id).await;
    assert_eq!(
        sticky_slot(&nodes[1], &pool, "b").await,
        "g0",
        "b waited for its bound slot"
    );
    release(&nodes[0], &pool, &a.id).await;
    assert_eq!(sticky_slot(&nodes[0], &pool, "a").await, "g1");
    let stats = nodes[0].stats(&pool).await.expect("stats");
    assert_eq!((stats.slots, stats.bindings, stats.rebinds), (2, 2, 0));
}

/// Syncs a weighted pool with one slot per endpoint (weights 3:1), then makes `n` acquire+release
/// cycles; the endpoint of every pick.
async fn weighted_picks(cp: ControlPlane, pool: ServerId, n: usize) -> Vec<u32> {
    cp.sync(&pool, &weighted_spec()).await.expect("sync");
    let r0 = reserved(&cp, &pool, &AcquireRequest::new("n", None)).await;
    let l0 = commit_lease(&cp, &pool, &r0, "w0").await;
    let r1 = reserved(&cp, &pool, &AcquireRequest::new("n", None)).await;
    let l1 = commit_lease(&cp, &pool, &r1, "w1").await;
    let mut endpoints = [r0.endpoint, r1.endpoint];
    endpoints.sort_unstable();
    assert_eq!(endpoints, [0, 1], "one slot per endpoint");
    assert_eq!((l0.slot.endpoint, l1.slot.endpoint), (r0.endpoint, r1.endpoint));
    release(&cp, &pool, &l0.id).await;
    release(&cp, &pool, &l1.id).await;

    let mut picks = Vec::with_capacity(n);
    for _ in 0..n {
        let lease = leased(&cp, &pool, &AcquireRequest::new("n", None)).await;
        picks.push(lease.slot.endpoint);
        let changed = cp.release(&pool, &lease.id, Outcome::default()).await.expect("release");
        assert!(changed.changed);
    }
    picks
}

fn weighted_spec() -> PoolSpec {
    PoolSpec {
        endpoint_weights: vec![3, 1],
        ..spec(Strategy::Weighted, 2)
    }
}

/// Picks (acquire + release cycles) per pool: 10,000 on every backend. The tolerance is ±3%
/// (75% ± 3): stride scheduling is exact to within one cycle (4 picks).
fn weighted_picks_for(_backend: Backend) -> usize {
    10_000
}

/// weighted: endpoints weighted 3:1 get 75% / 25% of the picks (±3%), deterministically: two
/// pools with the same history pick identically.
async fn weighted_follows_endpoint_weights(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let n = weighted_picks_for(backend);
    let runs = concurrently(
        nodes
            .iter()
            .map(|cp| weighted_picks(cp.clone(), pool_id(), n))
            .collect(),
    )
    .await;
    let share = runs[0].iter().filter(|&&e| e == 0).count() as f64 / n as f64;
    assert!(
        (share - 0.75).abs() <= 0.03,
        "endpoint 0 got {share:.4} of the picks, expected 0.75 ± 0.03"
    );
    // Smooth (interleaved, not in blocks): three picks of the heavier endpoint per lighter one, a
    // floating-point tie may stretch one run to four.
    let longest = runs[0].split(|&e| e == 1).map(<[u32]>::len).max().unwrap_or(0);
    assert!(longest <= 4, "a run of {longest} picks of endpoint 0");
    let first_diff = runs[0].iter().zip(&runs[1]).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "two pools with the same history picked differently");
}

/// weighted: latency lowers a slot's weight (100 ms halves it): endpoint 0 (weight 3, 100 ms)
/// against endpoint 1 (weight 1, no latency) is 1.5 : 1, so 60% ± 3%; errors lower it further.
async fn weighted_accounts_for_latency_and_errors(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    weighted_picks(cp.clone(), pool.clone(), 0).await;
    let mut count = [0usize; 2];
    let n = weighted_picks_for(backend) / 2;
    for _ in 0..n {
        let lease = leased(&cp, &pool, &AcquireRequest::new("n", None)).await;
        let outcome = Outcome {
            latency_ms: (lease.slot.endpoint == 0).then_some(100),
            ..Outcome::default()
        };
        count[lease.slot.endpoint as usize] += 1;
        assert!(cp.release(&pool, &lease.id, outcome).await.expect("release").changed);
    }
    let share = count[0] as f64 / n as f64;
    assert!(
        (share - 0.6).abs() <= 0.03,
        "endpoint 0 got {share:.4} of the picks, expected 0.60 ± 0.03"
    );
    let slots = cp.slots(&pool).await.expect("slots");
    let ew0 = slots
        .iter()
        .find(|s| s.endpoint == 0)
        .expect("slot at endpoint 0")
        .latency_ewma_ms;
    assert!((ew0 - 100.0).abs() < 1e-6, "latency EWMA {ew0}");

    // Endpoint 0 now fails every request: its error rate climbs and its share collapses.
    let mut count = [0usize; 2];
    for _ in 0..n {
        let lease = leased(&cp, &pool, &AcquireRequest::new("n", None)).await;
        let outcome = Outcome {
            latency_ms: (lease.slot.endpoint == 0).then_some(100),
            error: lease.slot.endpoint == 0,
            retire: false,
            ..Outcome::default()
        };
        count[lease.slot.endpoint as usize] += 1;
        assert!(cp.release(&pool, &lease.id, outcome).await.expect("release").changed);
    }
    assert!(
        count[0] < count[1] / 4,
        "a failing endpoint kept {count:?} of the picks"
    );
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!(stats.errors, count[0] as u64);
}

crate::on_every_backend!(
    round_robin_is_one_fleet_wide_cursor,
    least_connections_picks_the_minimum,
    sticky_keeps_keys_on_their_slot,
    sticky_grows_then_waits_for_busy_slot,
    weighted_follows_endpoint_weights,
    weighted_accounts_for_latency_and_errors,
);
