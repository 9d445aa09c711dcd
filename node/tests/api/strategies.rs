//! Pool strategies observed end to end (SPEC §3): shared isolation, so every request leases a slot
//! by strategy, over a server with two endpoints that are two separate test upstreams, A and B.
//! Which endpoint served a call is read from the upstreams' own `tool_calls` counters (calls are
//! sequential where that is read, so exactly one counter moves per call), and the `counter` tool's
//! `session` field names the upstream session.
//!
//! Slot creation is not the strategy: a new slot's endpoint is the one with the fewest slots per
//! unit of weight (ties go to the first endpoint), so the first slot is always on A and, with
//! `pool_max_size` 2, the second one on B. Each test first makes both slots exist (calls that
//! find the first slot full), then measures the strategy's choice between them.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use poolgate_loadtests::upstream::{Upstream, UpstreamConfig};
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::mcp_client::{merged, register_endpoints, two_nodes, unique_prefix, upstream, Client};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ep {
    A,
    B,
}

/// The two endpoints of the server: two test upstreams.
struct Pair {
    a: Upstream,
    b: Upstream,
}

impl Pair {
    async fn start() -> Pair {
        Pair {
            a: upstream(UpstreamConfig::default()).await,
            b: upstream(UpstreamConfig::default()).await,
        }
    }

    /// Tool calls each upstream has received so far.
    fn calls(&self) -> (u64, u64) {
        (
            self.a.stats().tool_calls.load(Ordering::Relaxed),
            self.b.stats().tool_calls.load(Ordering::Relaxed),
        )
    }

    /// Upstream sessions each upstream has created so far (= slots created on it).
    fn initializes(&self) -> (u64, u64) {
        (
            self.a.stats().initializes.load(Ordering::Relaxed),
            self.b.stats().initializes.load(Ordering::Relaxed),
        )
    }

    /// Runs one tool call and tells which upstream served it; nothing else may be arriving.
    async fn served<T>(&self, call: impl Future<Output = T>) -> (Ep, T) {
        let before = self.calls();
        let out = call.await;
        let after = self.calls();
        match (after.0 - before.0, after.1 - before.1) {
            (1, 0) => (Ep::A, out),
            (0, 1) => (Ep::B, out),
            other => panic!("expected exactly one upstream tool call, saw (A, B) = {other:?}"),
        }
    }

    /// Waits until the upstreams together have received `total` tool calls.
    async fn wait_calls(&self, total: u64) -> (u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let c = self.calls();
            if c.0 + c.1 >= total {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "upstreams saw {c:?}, expected {total} calls in all"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Registers `id` on `app`: endpoints A and B with `weights`, shared isolation, pooling on.
    async fn register(&self, app: &TestApp, id: &str, weights: (u32, u32), pool: Value) {
        let endpoints = json!([
            {"url": self.a.url(), "weight": weights.0},
            {"url": self.b.url(), "weight": weights.1},
        ]);
        let pool = merged(json!({"pool_isolation": "shared"}), pool);
        register_endpoints(app, id, endpoints, pool).await;
    }
}

/// After `c` initialized (which created the first slot, on A), fills that slot (`cap` concurrent
/// slow calls) and sends one more call, which finds no spare capacity and creates the second
/// slot — on B, the endpoint with fewer slots per weight. The extra call is a quick `echo`, so
/// B's slot starts with a small latency EWMA (only A's carries the slow calls').
async fn make_second_slot(pair: &Pair, c: &Client, cap: u64, slow_ms: u64) {
    assert_eq!(pair.initializes(), (1, 0), "initialize created the first slot, on A");
    let slow =
        futures_util::future::join_all((0..cap).map(|i| c.call_ok(900 + i as i64, "slow", json!({"ms": slow_ms}))));
    let extra = async {
        pair.wait_calls(cap).await;
        c.call_ok(990, "echo", json!({"text": "second slot"})).await
    };
    let (_, echo) = tokio::join!(slow, extra);
    assert_eq!(echo["structuredContent"]["text"], "second slot");
    assert_eq!(pair.initializes(), (1, 1), "the second slot was created on B");
    assert_eq!(pair.calls(), (cap, 1), "the full first slot took the slow calls");
}

// ---------------------------------------------------------------------------
// round_robin
// ---------------------------------------------------------------------------

/// round_robin over two slots (one per endpoint, capacity 2 so a release still in flight never
/// makes a slot unavailable): the cursor's last choice was A's slot (the slow calls; B's slot was
/// created by a reservation, not chosen), so eight sequential calls, sent to `nodes` in turn, go
/// exactly B, A, B, A, B, A, B, A — and each endpoint's upstream session counts 1..4.
async fn round_robin_alternates(nodes: &[&TestApp]) {
    let pair = Pair::start().await;
    pair.register(
        nodes[0],
        "rr",
        (1, 1),
        json!({"pool_strategy": "round_robin", "pool_max_size": 2, "pool_session_capacity": 2}),
    )
    .await;
    let mut c = Client::new(nodes[0], "rr", "alice");
    c.initialize().await;
    make_second_slot(&pair, &c, 2, 400).await;

    let mut seen = Vec::new();
    for i in 0..8 {
        let client = c.via(nodes[i % nodes.len()], "rr");
        let (ep, (count, session)) = pair.served(client.count(i as i64 + 1)).await;
        seen.push((ep, count, session));
    }
    let order: Vec<Ep> = seen.iter().map(|s| s.0).collect();
    use Ep::{A, B};
    assert_eq!(
        order,
        [B, A, B, A, B, A, B, A],
        "consecutive choices go to consecutive slots"
    );
    for ep in [A, B] {
        let on: Vec<&(Ep, u64, String)> = seen.iter().filter(|s| s.0 == ep).collect();
        let counts: Vec<u64> = on.iter().map(|s| s.1).collect();
        assert_eq!(counts, [1, 2, 3, 4], "one upstream session per endpoint: {seen:?}");
        assert!(on.iter().all(|s| s.2 == on[0].2), "{seen:?}");
    }
    assert_eq!(pair.initializes(), (1, 1), "no slot beyond the two");
}

#[tokio::test]
async fn round_robin_alternates_endpoints() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    round_robin_alternates(&[&app]).await;
    app.stop().await;
}

/// The cursor is fleet-wide: the same with the calls alternating between two nodes on one Redis
/// (a cursor per node would send each node's calls alternately, i.e. A, A, B, B, ...).
#[tokio::test]
async fn round_robin_cursor_is_fleet_wide() {
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    round_robin_alternates(&[&a, &b]).await;
    b.stop().await;
    a.stop().await;
}

// ---------------------------------------------------------------------------
// least_connections
// ---------------------------------------------------------------------------

/// least_connections: with a slow call in flight on one slot (capacity 2, so that slot still has
/// room and only the strategy keeps quick calls away from it), every quick call goes to the other
/// endpoint; round_robin would send every other one to the busy slot.
#[tokio::test]
async fn least_connections_avoids_the_busy_endpoint() {
    let pair = Pair::start().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    pair.register(
        &app,
        "lc",
        (1, 1),
        json!({"pool_strategy": "least_connections", "pool_max_size": 2, "pool_session_capacity": 2}),
    )
    .await;
    let mut c = Client::new(&app, "lc", "alice");
    c.initialize().await;
    make_second_slot(&pair, &c, 2, 400).await;

    let before = pair.calls();
    let slow = c.call_ok(100, "slow", json!({"ms": 1200}));
    let quick = async {
        let now = pair.wait_calls(before.0 + before.1 + 1).await;
        let busy = if now.0 > before.0 { Ep::A } else { Ep::B };
        let mut served = Vec::new();
        for i in 0..6 {
            let (ep, result) = pair
                .served(c.call_ok(101 + i, "echo", json!({"text": format!("quick {i}")})))
                .await;
            assert_eq!(result["structuredContent"]["text"], format!("quick {i}"));
            served.push(ep);
        }
        (busy, served)
    };
    let started = Instant::now();
    let (slow_result, (busy, served)) = tokio::join!(slow, quick);
    assert_eq!(slow_result["structuredContent"]["ms"], 1200);
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "the quick calls ran while the slow one was in flight"
    );
    let idle = if busy == Ep::A { Ep::B } else { Ep::A };
    assert_eq!(
        served,
        vec![idle; 6],
        "quick calls avoid the endpoint {busy:?} with a call in flight"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// sticky
// ---------------------------------------------------------------------------

/// sticky on two nodes sharing Redis: alice's key is bound to A's slot and her calls stay there
/// from either node (one upstream session, counting on); bob arrives while alice's slot is busy,
/// so he is bound to a new slot on B and stays there too.
#[tokio::test]
async fn sticky_keeps_a_user_on_one_endpoint_from_any_node() {
    let pair = Pair::start().await;
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    pair.register(
        &a,
        "st",
        (1, 1),
        json!({"pool_strategy": "sticky", "pool_max_size": 2, "pool_timeout": 10}),
    )
    .await;
    let mut alice = Client::new(&a, "st", "alice");
    alice.initialize().await;
    let mut bob = Client::new(&b, "st", "bob");
    bob.initialize().await;
    assert_eq!(pair.initializes(), (1, 0), "one slot so far, on A");

    let (ep, (n, alice_up)) = pair.served(alice.count(1)).await;
    assert_eq!((ep, n), (Ep::A, 1), "alice is bound to the only slot");

    // Alice's slot busy (capacity 1): bob's first call gets a slot of his own, on B.
    let alice_on_b = alice.via(&b, "st");
    let slow = alice_on_b.call_ok(2, "slow", json!({"ms": 800}));
    let bob_first = async {
        pair.wait_calls(2).await;
        pair.served(bob.via(&a, "st").count(1)).await
    };
    let (slow_result, (ep, (n, bob_up))) = tokio::join!(slow, bob_first);
    assert_eq!(slow_result["structuredContent"]["ms"], 800);
    assert_eq!((ep, n), (Ep::B, 1), "a second user lands on the other endpoint");
    assert_ne!(alice_up, bob_up);

    for i in 0..6u64 {
        let (on_alice, on_bob) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (ep, (n, up)) = pair.served(alice.via(on_alice, "st").count(10 + i as i64)).await;
        assert_eq!((ep, n, &up), (Ep::A, i + 2, &alice_up), "alice, call {i}");
        let (ep, (n, up)) = pair.served(bob.via(on_bob, "st").count(10 + i as i64)).await;
        assert_eq!((ep, n, &up), (Ep::B, i + 2, &bob_up), "bob, call {i}");
    }
    assert_eq!(pair.initializes(), (1, 1));
    b.stop().await;
    a.stop().await;
}

// ---------------------------------------------------------------------------
// weighted
// ---------------------------------------------------------------------------

/// weighted with endpoint weights 3:1 and one slot per endpoint (so the split comes from the
/// strategy, not from how many slots each endpoint has): after 30 warm-up calls (the slow calls
/// that created the slots left a latency EWMA on A, which the weight folds in), 200 sequential
/// calls give A a share of 0.75 ± 0.05, and B is never chosen twice in a row (smooth weighted
/// round robin); round_robin would give 0.5 and alternate.
#[tokio::test]
async fn weighted_follows_endpoint_weights() {
    let pair = Pair::start().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    pair.register(
        &app,
        "wt",
        (3, 1),
        json!({"pool_strategy": "weighted", "pool_max_size": 2, "pool_session_capacity": 2}),
    )
    .await;
    let mut c = Client::new(&app, "wt", "alice");
    c.initialize().await;
    make_second_slot(&pair, &c, 2, 400).await;
    for i in 0..30 {
        c.call_ok(100 + i, "echo", json!({"text": "warm-up"})).await;
    }
    let mut order = Vec::with_capacity(200);
    for i in 0..200 {
        let (ep, _) = pair.served(c.call_ok(1000 + i, "echo", json!({"text": "w"}))).await;
        order.push(ep);
    }
    let on_a = order.iter().filter(|e| **e == Ep::A).count();
    let share = on_a as f64 / order.len() as f64;
    assert!(
        (0.70..=0.80).contains(&share),
        "A served {on_a} of 200 calls (share {share:.3}), expected 0.75 ± 0.05: {order:?}"
    );
    assert!(
        !order.windows(2).any(|w| w == [Ep::B, Ep::B]),
        "B (weight 1) chosen twice in a row: {order:?}"
    );
    app.stop().await;
}
