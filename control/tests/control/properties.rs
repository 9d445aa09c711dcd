//! Seeded random concurrent workloads: 3 nodes × 4 tasks acquire, hold, release, renew, re-send,
//! "crash" (drop a lease or reservation without a word), double-release and release unknown
//! leases — over 10,000 operations per backend with a 300 ms lease TTL so that crashes heal.
//! After every step I1 is checked on a snapshot of the counters, I2 on every grant's slot record
//! and on a snapshot of all slots every few steps; throughout, I3 is checked on every release's
//! answer; at the end, once the TTL has passed and a reclaim ran, I4 (all capacity
//! back) and the pool's counters against what the tasks did.
//!
//! Every task's choices come from the seed (printed on failure; set `POOLGATE_TEST_SEED`, decimal
//! or 0x-hex, to replay or explore). The interleaving of the tasks is up to the scheduler.

use std::time::{Duration, Instant};

use poolgate_control::{
    AcquireRequest, Affinity, Attempt, Committed, ControlError, ControlPlane, Outcome, PoolSpec, SlotState,
};
use poolgate_shared::domain::pool::Strategy;
use poolgate_shared::domain::server::ServerId;

use crate::harness::{concurrently, meta, pool_id, spec, Backend, Plane, Rng};

const NODES: usize = 3;
const TASKS_PER_NODE: usize = 4;
/// 3 × 4 × 850 = 10,200 operations per backend.
const OPS_PER_TASK: usize = 850;
const TTL_MS: u64 = 300;
/// A lease or reservation whose request was sent less than this long ago cannot have expired:
/// its expiry is control-plane time at the grant (after the send) plus the TTL.
const SURELY_ALIVE: Duration = Duration::from_millis(TTL_MS - 100);
const MAX: u32 = 6;
const CAPACITY: u32 = 3;
/// The slot records are read after every this many steps (the counters after every step). A
/// slot's lease count only grows at a grant, and every grant's reply carries the slot's record,
/// which is checked as well: I2 is seen at the very moment it could break.
const SLOTS_EVERY: usize = 4;
const DEFAULT_SEED: u64 = 0x9e11_5eed_2024;

fn seed() -> u64 {
    match std::env::var("POOLGATE_TEST_SEED") {
        Ok(raw) => {
            let raw = raw.trim();
            let parsed = match raw.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => raw.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("POOLGATE_TEST_SEED={raw}: {e}"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

/// A lease a task holds, and when the request that granted or last renewed it was sent.
struct Held {
    id: String,
    slot: String,
    sent: Instant,
}

/// What one task did, to compare with the pool's counters at the end.
#[derive(Default)]
struct Tally {
    ops: u64,
    /// Distinct leases granted (by an acquire or a commit).
    granted: u64,
    /// Releases that ended a lease (`changed`).
    released: u64,
    released_with_error: u64,
    /// Leases and reservations dropped without a word, and leases that were gone when released.
    dead: Vec<String>,
    /// Leases this task ended (candidates for double releases).
    ended: Vec<String>,
    /// Attempts answered with a reservation, and with "wait".
    reservations: u64,
    waits: u64,
    /// Attempts answered with a lease or a reservation (each lands in the wait histogram).
    answered: u64,
    /// Releases that ended a lease and reported a latency: count and summed ms; and per
    /// affinity code (hit, miss, new) the releases reporting it.
    timed: u64,
    timed_ms: u64,
    affinity: [u64; 3],
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.granted += other.granted;
        self.released += other.released;
        self.released_with_error += other.released_with_error;
        self.dead.extend(other.dead);
        self.ended.extend(other.ended);
        self.reservations += other.reservations;
        self.waits += other.waits;
        self.answered += other.answered;
        self.timed += other.timed;
        self.timed_ms += other.timed_ms;
        for (a, b) in self.affinity.iter_mut().zip(other.affinity) {
            *a += b;
        }
    }
}

fn strategy_for(seed: u64) -> Strategy {
    [Strategy::RoundRobin, Strategy::LeastConnections, Strategy::Weighted][(seed % 3) as usize]
}

fn pool_spec(seed: u64) -> PoolSpec {
    PoolSpec {
        capacity: CAPACITY,
        lease_ttl_ms: TTL_MS,
        reservation_ttl_ms: TTL_MS,
        endpoint_weights: vec![2, 1],
        ..spec(strategy_for(seed), MAX)
    }
}

/// I1 (and leases within the slots' capacity) on an atomic snapshot of the counters; with
/// `slots`, I2 on an atomic snapshot of every slot record as well.
async fn check_snapshot(cp: &ControlPlane, pool: &ServerId, ctx: &str, slots: bool) {
    let stats = cp.stats(pool).await.unwrap_or_else(|e| panic!("{ctx}: stats: {e}"));
    assert!(
        stats.slots + stats.reservations <= u64::from(MAX),
        "{ctx}: I1 broken: {} slots + {} reservations > {MAX}",
        stats.slots,
        stats.reservations
    );
    assert!(
        stats.leases <= stats.slots * u64::from(CAPACITY),
        "{ctx}: {} leases on {} slots of capacity {CAPACITY}",
        stats.leases,
        stats.slots
    );
    if slots {
        let slots = cp.slots(pool).await.unwrap_or_else(|e| panic!("{ctx}: slots: {e}"));
        assert!(slots.len() <= MAX as usize, "{ctx}: I1 broken: {slots:?}");
        for s in &slots {
            assert!(s.leases <= CAPACITY, "{ctx}: I2 broken on {}: {s:?}", s.id);
        }
    }
}

fn loud() -> Outcome {
    Outcome {
        latency_ms: Some(9_999),
        error: true,
        retire: true,
        affinity: Affinity::Hit,
    }
}

async fn worker(cp: ControlPlane, pool: ServerId, seed: u64, name: String) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut held: Vec<Held> = Vec::new();
    for op in 0..OPS_PER_TASK {
        let ctx = format!("seed {seed:#x}, {name}, op {op}");
        let roll = rng.below(100);
        let action = match roll {
            0..=34 if held.len() < 2 => "acquire",
            0..=59 if !held.is_empty() => "release",
            60..=67 if !held.is_empty() => "renew",
            68..=72 if !held.is_empty() => "resend",
            // Rare: a dead lease blocks its capacity for a whole TTL.
            73 if !held.is_empty() => "crash",
            74..=86 if !tally.ended.is_empty() => "double-release",
            87..=93 => "unknown-release",
            _ => "hold",
        };
        match action {
            "acquire" => {
                let mut req = AcquireRequest::new(&name, None);
                req.waited_ms = rng.below(40);
                let sent = Instant::now();
                let answer = cp.try_acquire(&pool, &req).await;
                tally.answered += u64::from(matches!(answer, Ok(Attempt::Leased(_) | Attempt::Create(_))));
                match answer {
                    Ok(Attempt::Leased(l)) => {
                        assert_eq!(l.id, req.lease_id, "{ctx}");
                        assert!(l.slot.leases <= CAPACITY, "{ctx}: I2: {l:?}");
                        tally.granted += 1;
                        held.push(Held {
                            id: l.id,
                            slot: l.slot.id,
                            sent,
                        });
                    }
                    Ok(Attempt::Create(r)) => {
                        assert_eq!(r.id, req.lease_id, "{ctx}");
                        tally.reservations += 1;
                        match rng.below(20) {
                            0 => {
                                let alive = sent.elapsed() < SURELY_ALIVE;
                                let existed = cp.abort(&pool, &r.id).await.expect("abort");
                                assert!(existed || !alive, "{ctx}: a live reservation was not found");
                            }
                            1 => tally.dead.push(r.id),
                            _ => {
                                let slot = format!("{name}-{op}");
                                let sent = Instant::now();
                                match cp.commit(&pool, &r.id, &slot, &meta(&slot)).await {
                                    Ok(Committed::Leased(l)) => {
                                        assert_eq!((l.id.as_str(), l.slot.id.as_str()), (r.id.as_str(), slot.as_str()));
                                        assert_eq!(l.slot.leases, 1, "{ctx}: a new slot's first lease: {l:?}");
                                        tally.granted += 1;
                                        held.push(Held {
                                            id: l.id,
                                            slot: l.slot.id,
                                            sent,
                                        });
                                    }
                                    Err(ControlError::ReservationGone) => {
                                        assert!(sent.elapsed() >= SURELY_ALIVE, "{ctx}: live reservation refused")
                                    }
                                    other => panic!("{ctx}: commit: {other:?}"),
                                }
                            }
                        }
                    }
                    Ok(Attempt::Wait { in_use, limit }) => {
                        tally.waits += 1;
                        assert_eq!((in_use, limit), (MAX, MAX), "{ctx}: waits only at max (I1)");
                    }
                    Err(e) => panic!("{ctx}: acquire: {e}"),
                }
            }
            "release" => {
                let h = held.swap_remove(rng.below(held.len() as u64) as usize);
                let outcome = Outcome {
                    latency_ms: (rng.below(4) > 0).then(|| rng.below(50)),
                    error: rng.below(10) == 0,
                    // Slots leave the pool now and then, so creation keeps going on.
                    retire: rng.below(20) == 0,
                    affinity: [Affinity::None, Affinity::Hit, Affinity::Miss, Affinity::New][rng.below(4) as usize],
                };
                let alive = h.sent.elapsed() < SURELY_ALIVE;
                let r = cp.release(&pool, &h.id, outcome).await.expect("release");
                if r.changed {
                    tally.released += 1;
                    tally.released_with_error += u64::from(outcome.error);
                    if let Some(ms) = outcome.latency_ms {
                        tally.timed += 1;
                        tally.timed_ms += ms;
                    }
                    if outcome.affinity != Affinity::None {
                        tally.affinity[usize::from(outcome.affinity.code()) - 1] += 1;
                    }
                    tally.ended.push(h.id);
                } else {
                    assert!(!alive, "{ctx}: a live lease was not released");
                    assert!(r.closed.is_empty(), "{ctx}: {r:?}");
                    tally.dead.push(h.id);
                }
            }
            "renew" => {
                let i = rng.below(held.len() as u64) as usize;
                let alive = held[i].sent.elapsed() < SURELY_ALIVE;
                let sent = Instant::now();
                match cp.renew(&pool, &held[i].id).await.expect("renew") {
                    Some(_) => held[i].sent = sent,
                    None => {
                        assert!(!alive, "{ctx}: a live lease could not be renewed");
                        tally.dead.push(held.swap_remove(i).id);
                    }
                }
            }
            "resend" => {
                let i = rng.below(held.len() as u64) as usize;
                // Only while surely alive: a re-send after expiry is a new request.
                if held[i].sent.elapsed() < SURELY_ALIVE {
                    let req = AcquireRequest {
                        lease_id: held[i].id.clone(),
                        holder: name.clone(),
                        key: None,
                        waited_ms: 0,
                        user: None,
                        first: true,
                    };
                    match cp.try_acquire(&pool, &req).await {
                        Ok(Attempt::Leased(l)) => {
                            assert_eq!((&l.id, &l.slot.id), (&held[i].id, &held[i].slot), "{ctx}: I11")
                        }
                        other => panic!("{ctx}: I11: a re-sent acquire got {other:?}"),
                    }
                }
            }
            "crash" => {
                let h = held.swap_remove(rng.below(held.len() as u64) as usize);
                tally.dead.push(h.id);
            }
            "double-release" => {
                let id = &tally.ended[rng.below(tally.ended.len() as u64) as usize];
                let r = cp.release(&pool, id, loud()).await.expect("release");
                assert!(
                    !r.changed && r.closed.is_empty(),
                    "{ctx}: I3: double release of {id}: {r:?}"
                );
            }
            "unknown-release" => {
                let id = format!("unknown-{}", rng.next_u64());
                let r = cp.release(&pool, &id, loud()).await.expect("release");
                assert!(!r.changed && r.closed.is_empty(), "{ctx}: I3: unknown release: {r:?}");
            }
            _ => tokio::time::sleep(Duration::from_millis(rng.below(8))).await,
        }
        tally.ops += 1;
        check_snapshot(&cp, &pool, &format!("{ctx} ({action})"), op % SLOTS_EVERY == 0).await;
    }
    // Whatever is still held is dropped: the end of the test is the last crash.
    tally.dead.extend(held.into_iter().map(|h| h.id));
    tally
}

async fn random_workload_keeps_invariants(backend: Backend) {
    let seed = seed();
    let plane = Plane::new(backend);
    let nodes = plane.nodes(NODES).await;
    let pool = pool_id();
    let cfg = pool_spec(seed);
    nodes[0].sync(&pool, &cfg).await.expect("sync");
    eprintln!("property seed {seed:#x} ({:?}, {backend:?})", cfg.strategy);
    let started = Instant::now();

    let mut seeds = Rng::new(seed);
    let tasks = (0..NODES * TASKS_PER_NODE)
        .map(|i| {
            worker(
                nodes[i % NODES].clone(),
                pool.clone(),
                seeds.next_u64(),
                format!("node{}-task{i}", i % NODES),
            )
        })
        .collect();
    let mut total = Tally::default();
    for t in concurrently(tasks).await {
        total.merge(t);
    }
    let ctx = format!("seed {seed:#x} after {} ops in {:?}", total.ops, started.elapsed());
    assert!(total.ops >= 10_000, "{ctx}");
    eprintln!(
        "{ctx}: {} leases granted, {} released, {} reservations, {} waits, {} dead",
        total.granted,
        total.released,
        total.reservations,
        total.waits,
        total.dead.len()
    );

    // I4: once every TTL has passed, a reclaim pass ends whatever the crashed holders left.
    tokio::time::sleep(Duration::from_millis(TTL_MS + 150)).await;
    for _ in 0..20 {
        let r = nodes[1].reclaim(&pool, 1_000).await.expect("reclaim");
        if (r.leases, r.bindings, r.reservations) == (0, 0, 0) {
            break;
        }
    }
    let stats = nodes[2].stats(&pool).await.expect("stats");
    let slots = nodes[2].slots(&pool).await.expect("slots");
    assert_eq!((stats.leases, stats.reservations), (0, 0), "{ctx}: I4: {stats:?}");
    assert!(
        slots.iter().all(|s| s.leases == 0 && s.state == SlotState::Ready),
        "{ctx}: I4: {slots:?}"
    );
    assert_eq!(
        stats.available, stats.slots,
        "{ctx}: I4: idle slots not selectable: {stats:?}"
    );
    // Every granted lease ended exactly once: released by its holder or reclaimed after its TTL;
    // no double or unknown release was counted (I3).
    assert_eq!(stats.acquisitions, total.granted, "{ctx}: {stats:?}");
    assert_eq!(stats.releases, total.released + stats.expired, "{ctx}: {stats:?}");
    assert_eq!(stats.acquisitions, stats.releases, "{ctx}: {stats:?}");
    assert_eq!(stats.errors, total.released_with_error, "{ctx}: {stats:?}");
    // The fleet-wide histograms and affinity reports count exactly what the tasks did.
    assert_eq!(stats.wait.count(), total.answered, "{ctx}: wait histogram {stats:?}");
    assert_eq!(
        (stats.hold.count(), stats.hold.sum_ms),
        (total.timed, total.timed_ms),
        "{ctx}: request-time histogram"
    );
    let per_endpoint: (u64, u64) = stats
        .endpoint_hold
        .values()
        .fold((0, 0), |acc, (n, ms)| (acc.0 + n, acc.1 + ms));
    assert_eq!(
        per_endpoint,
        (total.timed, total.timed_ms),
        "{ctx}: per-endpoint request time"
    );
    assert_eq!(
        [stats.affinity.hits, stats.affinity.misses, stats.affinity.new],
        total.affinity,
        "{ctx}: affinity reports"
    );
    // The workload reached every path it is meant to: a full pool, slots leaving and being
    // created again, and dead leases reclaimed.
    assert!(
        total.waits > 0 && total.reservations > u64::from(MAX) && stats.expired > 0,
        "{ctx}: a workload too tame to test anything: {stats:?}"
    );

    // I3 at rest: late releases of dead and ended leases change nothing at all.
    let before = (stats.clone(), slots.clone());
    for id in total.dead.iter().chain(total.ended.iter().take(200)) {
        let r = nodes[0].release(&pool, id, loud()).await.expect("release");
        assert!(!r.changed, "{ctx}: I3: {id} released again: {r:?}");
    }
    let after = (
        nodes[0].stats(&pool).await.expect("stats"),
        nodes[0].slots(&pool).await.expect("slots"),
    );
    assert_eq!(before, after, "{ctx}: I3: late releases changed the pool");

    // I4: the whole capacity (max × capacity leases) can be taken again, and no more.
    let mut created = 0;
    for i in 0..MAX * CAPACITY {
        let req = AcquireRequest::new("final", None);
        match nodes[i as usize % NODES]
            .try_acquire(&pool, &req)
            .await
            .expect("attempt")
        {
            Attempt::Leased(_) => {}
            Attempt::Create(r) => {
                let slot = format!("final-{created}");
                created += 1;
                let c = nodes[0].commit(&pool, &r.id, &slot, &meta(&slot)).await;
                assert!(matches!(c, Ok(Committed::Leased(_))), "{ctx}: {c:?}");
            }
            Attempt::Wait { in_use, limit } => {
                panic!(
                    "{ctx}: I4: capacity lost: lease {i} of {} waits at {in_use}/{limit}",
                    MAX * CAPACITY
                )
            }
        }
    }
    let last = nodes[0].try_acquire(&pool, &AcquireRequest::new("final", None)).await;
    assert!(
        matches!(last, Ok(Attempt::Wait { .. })),
        "{ctx}: more than max × capacity: {last:?}"
    );
}

crate::on_every_backend!(random_workload_keeps_invariants);
