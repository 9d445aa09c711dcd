//! Leader election and the cleanup loop against real Redis (and the embedded plane).

use std::sync::Arc;
use std::time::Duration;

use poolgate_control::{
    AcquireRequest, Attempt, Committed, ControlError, ControlPlane, EmbeddedControlPlane, Pools, RedisControlPlane,
    SlotMeta,
};
use poolgate_housekeeping::{Cleanup, Leadership, Timing};
use poolgate_shared::config::DatabaseKind;
use poolgate_shared::domain::pool::{Isolation, PoolConfig, Strategy};
use poolgate_shared::domain::server::{Endpoint, Server, ServerId, UpstreamHeaders};
use poolgate_store::Store;
use poolgate_upstream::UpstreamClient;
use tokio::time::Instant;

const TIMING: Timing = Timing {
    ttl: Duration::from_millis(1500),
    heartbeat: Duration::from_millis(200),
    renew_deadline: Duration::from_millis(1000),
};

fn redis_url() -> String {
    std::env::var("POOLGATE_TEST_REDIS_URL").expect("POOLGATE_TEST_REDIS_URL is not set: run scripts/test.sh")
}

async fn redis_plane(prefix: &str) -> ControlPlane {
    let plane = ControlPlane::Redis(Arc::new(
        RedisControlPlane::connect(&redis_url(), prefix).expect("client"),
    ));
    for _ in 0..200 {
        if plane.ping().await.is_ok() {
            return plane;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis unreachable");
}

fn prefix() -> String {
    format!("pghk:{}:", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Three campaigners on separate connections: never two acting leaders; when the leader dies
/// without resigning (its task is killed), another acts within TTL + one heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_takeover_within_ttl_plus_heartbeat() {
    let prefix = prefix();
    let mut leaders = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let l = Leadership::new(redis_plane(&prefix).await, format!("coord-{i}"), TIMING);
        let runner = l.clone();
        tasks.push(tokio::spawn(
            async move { runner.run(std::future::pending::<()>()).await },
        ));
        leaders.push(l);
    }
    let acting = |ls: &[Leadership]| ls.iter().filter(|l| l.term().is_some()).count();
    let deadline = Instant::now() + Duration::from_secs(3);
    let first = loop {
        let n = acting(&leaders);
        assert!(n <= 1, "two acting leaders");
        if let Some(i) = leaders.iter().position(|l| l.term().is_some()) {
            break i;
        }
        assert!(Instant::now() < deadline, "nobody became leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let first_term = leaders[first].term().expect("leading");
    // Watch a while: leadership is stable and single.
    for _ in 0..50 {
        assert_eq!(acting(&leaders), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL-like: the leader's task stops without resigning.
    tasks[first].abort();
    let killed = Instant::now();
    let (next, took) = loop {
        assert!(acting(&leaders) <= 1, "the dead leader and a new one acted at once");
        if let Some(i) = leaders
            .iter()
            .enumerate()
            .position(|(i, l)| i != first && l.term().is_some())
        {
            break (i, killed.elapsed());
        }
        assert!(killed.elapsed() < Duration::from_secs(5), "no takeover");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let next_term = leaders[next].term().expect("leading");
    assert!(next_term > first_term, "terms only grow: {first_term} then {next_term}");
    assert!(
        took <= TIMING.ttl + TIMING.heartbeat + Duration::from_millis(300),
        "takeover took {took:?} (TTL {:?} + heartbeat {:?})",
        TIMING.ttl,
        TIMING.heartbeat
    );
    println!("takeover after {took:?}");
    for t in tasks {
        t.abort();
    }
}

fn server(id: &str, recycle_seconds: u32) -> Server {
    let pool = PoolConfig {
        pool_enabled: true,
        pool_strategy: Strategy::LeastConnections,
        pool_isolation: Isolation::Shared,
        pool_recycle_seconds: recycle_seconds,
        pool_lease_ttl: 1,
        ..PoolConfig::default()
    };
    Server {
        id: ServerId::parse(id).expect("id"),
        name: id.into(),
        endpoints: vec![Endpoint {
            url: "http://127.0.0.1:9/mcp".into(),
            weight: 1,
        }],
        upstream_headers: UpstreamHeaders::default(),
        pool_defaults: Default::default(),
        pool,
        created_at: poolgate_shared::domain::now(),
        updated_at: poolgate_shared::domain::now(),
    }
}

async fn sqlite_store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("pghk-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let store = Store::connect(
        &format!("sqlite://{}", dir.join("db.sqlite").display()),
        &DatabaseKind::Sqlite,
    )
    .expect("store");
    store.migrate_up().await.expect("migrate");
    (store, dir)
}

/// A leader paused past its TTL (its renewals stop, as under SIGSTOP) is replaced; the new leader
/// fences the pools; when the old one wakes, its fenced write is refused and it stops acting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leaders_fenced_writes_are_refused() {
    let prefix = prefix();
    let (store, dir) = sqlite_store().await;
    let srv = server("fenced", 3600);
    store.create_server(&srv, "test").await.expect("server");
    let old_plane = redis_plane(&prefix).await;
    let pools = Pools::new(old_plane.clone(), store.clone());
    pools.sync_from_store(&srv.id).await.expect("sync");

    let old = Leadership::new(old_plane.clone(), "old", TIMING);
    let old_term = old.tick().await.expect("old leads");
    // Paused: no more renewals. Its own deadline passes before the key expires.
    let new = Leadership::new(redis_plane(&prefix).await, "new", TIMING);
    assert_eq!(new.tick().await, None, "held while the old key lives");
    tokio::time::sleep(TIMING.ttl + Duration::from_millis(100)).await;
    assert_eq!(
        old.term(),
        None,
        "past its renew deadline the old leader no longer acts"
    );
    let new_term = new.tick().await.expect("new leads after the TTL");
    assert!(new_term > old_term);
    // The old leader wakes with a write it had prepared under its old term: refused.
    match old_plane.recycle(&srv.id, old_term, Duration::from_secs(1), 10).await {
        Err(ControlError::StaleFence { newest }) => assert_eq!(newest, new_term),
        other => panic!("the deposed leader's write went through: {other:?}"),
    }
    // Its cleanup loop does nothing, and its renew fails.
    let cleanup = Cleanup {
        pools: pools.clone(),
        upstream: UpstreamClient::new().expect("client"),
        leadership: old.clone(),
        deadline: Duration::from_secs(10),
    };
    assert_eq!(cleanup.tick().await.pools, 0, "a deposed leader does not act");
    // Even if it still believed it led, the fenced recycle inside the tick would depose it.
    old.step_down();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cleanup (leader) reclaims the lease of a node that died holding it, and recycles idle slots
/// older than `pool_recycle_seconds`.
async fn cleanup_reclaims_and_recycles(plane: ControlPlane) {
    let (store, dir) = sqlite_store().await;
    let srv = server("tidy", 1);
    store.create_server(&srv, "test").await.expect("server");
    let pools = Pools::new(plane.clone(), store.clone());
    pools.sync_from_store(&srv.id).await.expect("sync");
    let leadership = Leadership::new(plane.clone(), "leader", TIMING);
    leadership.tick().await.expect("leads");
    // Two slots; the lease on one belongs to a node that dies.
    let mut leases = Vec::new();
    for i in 0..2 {
        match plane
            .try_acquire(&srv.id, &AcquireRequest::new("dead-node", None))
            .await
            .expect("attempt")
        {
            Attempt::Create(r) => match plane
                .commit(&srv.id, &r.id, &format!("s{i}"), &SlotMeta::default())
                .await
            {
                Ok(Committed::Leased(l)) => leases.push(l.id),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    plane
        .release(&srv.id, &leases[1], Default::default())
        .await
        .expect("release");
    let cleanup = Cleanup {
        pools,
        upstream: UpstreamClient::new().expect("client"),
        leadership: leadership.clone(),
        deadline: Duration::from_secs(10),
    };
    // Past the lease TTL (1 s) and the recycle age (1 s).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    leadership.tick().await.expect("still leads");
    let report = cleanup.tick().await;
    assert_eq!(report.pools, 1, "{report:?}");
    assert_eq!(report.leases, 1, "the dead node's lease is reclaimed: {report:?}");
    assert_eq!(
        report.recycled, 2,
        "both idle slots are older than the recycle age: {report:?}"
    );
    let stats = plane.stats(&srv.id).await.expect("stats");
    assert_eq!((stats.leases, stats.slots), (0, 0), "{stats:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_on_redis() {
    cleanup_reclaims_and_recycles(redis_plane(&prefix()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_on_the_embedded_plane() {
    cleanup_reclaims_and_recycles(ControlPlane::Embedded(Arc::new(EmbeddedControlPlane::new()))).await;
}

/// `warm` creates reservations only up to `min` idle (creations in flight counted), never past
/// `max` (I1), and refuses an old fencing token.
async fn warm_respects_min_max_and_fence(plane: ControlPlane) {
    let pool = ServerId::parse("warm").expect("id");
    let mut spec = poolgate_control::PoolSpec::for_server(&server("warm", 3600));
    spec.max_size = 3;
    plane.sync(&pool, &spec).await.expect("sync");
    plane.fence(&pool, 5).await.expect("fence");
    let mut ids = Vec::new();
    for i in 0..5 {
        match plane.warm(&pool, 5, 2, &format!("w{i}"), "leader").await.expect("warm") {
            Some(r) => ids.push(r.id),
            None => break,
        }
    }
    assert_eq!(ids.len(), 2, "two idle wanted, two creations in flight");
    // Commit one: one idle + one in flight = still 2, nothing more.
    let c = plane
        .commit(&pool, &ids[0], "slot-a", &SlotMeta::default())
        .await
        .expect("commit");
    assert_eq!(c, Committed::Added("slot-a".into()));
    assert_eq!(plane.warm(&pool, 5, 2, "w9", "leader").await.expect("warm"), None);
    // Abort the other: one more may be created; min 10 is capped by max 3.
    assert!(plane.abort(&pool, &ids[1]).await.expect("abort"));
    let mut more = 0;
    for i in 0..5 {
        if plane
            .warm(&pool, 5, 10, &format!("x{i}"), "leader")
            .await
            .expect("warm")
            .is_some()
        {
            more += 1;
        }
    }
    assert_eq!(more, 2, "slots + reservations never exceed max 3 (I1)");
    let stats = plane.stats(&pool).await.expect("stats");
    assert!(stats.slots + stats.reservations <= 3, "{stats:?}");
    assert!(matches!(
        plane.warm(&pool, 4, 2, "old", "old-leader").await,
        Err(ControlError::StaleFence { newest: 5 })
    ));
}

#[tokio::test]
async fn warm_on_redis() {
    warm_respects_min_max_and_fence(redis_plane(&prefix()).await).await;
}

#[tokio::test]
async fn warm_on_the_embedded_plane() {
    warm_respects_min_max_and_fence(ControlPlane::Embedded(Arc::new(EmbeddedControlPlane::new()))).await;
}

/// Snapshots land in the database as deltas of the fleet-wide counters (the first pass records
/// the baseline); retention deletes rows older than the retention and only those.
async fn snapshots_and_retention(store: Store) {
    let plane = ControlPlane::Embedded(Arc::new(EmbeddedControlPlane::new()));
    let srv = server("snap", 3600);
    store.create_server(&srv, "test").await.expect("server");
    let pools = Pools::new(plane.clone(), store.clone());
    pools.sync_from_store(&srv.id).await.expect("sync");
    let leadership = Leadership::new(plane.clone(), "leader", TIMING);
    leadership.tick().await.expect("leads");
    let snaps = poolgate_housekeeping::Snapshots::new(pools, leadership, Duration::from_secs(60), 7);
    assert_eq!(
        snaps.tick().await.written,
        0,
        "the first pass only records the baseline"
    );
    for i in 0..3 {
        let req = AcquireRequest::new("n", None);
        let lease = match plane.try_acquire(&srv.id, &req).await.expect("attempt") {
            Attempt::Create(r) => match plane
                .commit(&srv.id, &r.id, &format!("s{i}"), &SlotMeta::default())
                .await
            {
                Ok(Committed::Leased(l)) => l.id,
                other => panic!("{other:?}"),
            },
            Attempt::Leased(l) => l.id,
            other => panic!("{other:?}"),
        };
        plane
            .release(&srv.id, &lease, Default::default())
            .await
            .expect("release");
    }
    // An old row, past the 7-day retention.
    let mut old = poolgate_store::StrategySnapshot {
        pool_id: None,
        server_id: "snap".into(),
        strategy: "round_robin".into(),
        recorded_at: poolgate_shared::domain::now() - chrono::Duration::days(10),
        window_seconds: 60,
        acquisitions: 99,
        timeouts: 0,
        errors: 0,
        rebinds: 0,
        wait_p50_ms: None,
        wait_p95_ms: None,
        wait_p99_ms: None,
        utilization: None,
        ..Default::default()
    };
    store.insert_snapshot(&old).await.expect("old row");
    old.recorded_at = poolgate_shared::domain::now() - chrono::Duration::days(6);
    old.acquisitions = 98;
    store.insert_snapshot(&old).await.expect("recent row");
    let report = snaps.tick().await;
    assert_eq!((report.written, report.deleted), (1, 1), "{report:?}");
    let rows = store.list_snapshots("snap", 10).await.expect("rows");
    assert_eq!(rows.len(), 2, "the 6-day-old row stays: {rows:?}");
    let newest = &rows[0];
    assert_eq!(
        (newest.acquisitions, newest.timeouts, newest.strategy.as_str()),
        (3, 0, "least_connections")
    );
    assert!(newest.pool_id.as_deref().is_some_and(|p| p.starts_with("pool-")));
    assert_eq!(newest.reuse_rate, Some(3.0), "three releases over one created slot");
    // Three acquisitions granted without waiting: the wait histogram's first bucket (<= 1 ms).
    assert!(newest.wait_p99_ms.is_some_and(|v| v <= 1.0), "{newest:?}");
    assert_eq!(newest.utilization_skew, Some(0.0), "one slot did all the work");
    assert_eq!(rows[1].acquisitions, 98);
}

#[tokio::test]
async fn snapshots_on_sqlite() {
    let (store, dir) = sqlite_store().await;
    snapshots_and_retention(store).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn snapshots_on_postgres() {
    use sqlx::Connection as _;
    let admin = std::env::var("POOLGATE_TEST_PG_URL").expect("POOLGATE_TEST_PG_URL: run scripts/test.sh");
    let name = format!("pghk_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("pg");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create");
    let mut url = url::Url::parse(&admin).expect("url");
    url.set_path(&name);
    let store = Store::connect(url.as_str(), &DatabaseKind::Postgres).expect("store");
    store.migrate_up().await.expect("migrate");
    snapshots_and_retention(store.clone()).await;
    store.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
}

/// With `pool_auto_optimize`, the leader's snapshot pass applies a confirmed recommendation:
/// a round_robin pool whose history shows returning users paying for landing on other sessions
/// becomes sticky, audited as actor `optimizer`; without the flag nothing changes.
#[tokio::test]
async fn auto_optimize_applies_a_confirmed_recommendation_with_an_audit_row() {
    use poolgate_housekeeping::optimizer::{self, Settings, Workload};
    let (store, dir) = sqlite_store().await;
    let plane = ControlPlane::Embedded(Arc::new(EmbeddedControlPlane::new()));
    let now = poolgate_shared::domain::now();
    let workload = Workload {
        arrival_per_s: 200.0,
        work_p50_ms: 10.0,
        work_p99_ms: 14.0,
        endpoint_slowness: vec![],
        returning_share: 0.95,
        miss_penalty_ms: 40.0,
    };
    let settings = Settings::default();
    let mut ids = Vec::new();
    for (id, auto) in [("auto", true), ("manual", false)] {
        let mut srv = server(id, 3600);
        srv.pool.pool_strategy = Strategy::RoundRobin;
        srv.pool.pool_max_size = 8;
        srv.pool.pool_session_capacity = 4;
        srv.pool.pool_auto_optimize = auto;
        store.create_server(&srv, "test").await.expect("server");
        let shape = optimizer::shape_for(&srv);
        // History: round_robin for long enough to confirm, after a change three hours ago.
        let rows = settings.window + settings.confirm;
        for i in 0..rows {
            let f = optimizer::simulate(Strategy::RoundRobin, &workload, &shape, 40 + i as u64, 3_000);
            let row = poolgate_store::StrategySnapshot {
                server_id: id.into(),
                strategy: if i + 1 == rows {
                    "least_connections"
                } else {
                    "round_robin"
                }
                .into(),
                recorded_at: now - chrono::Duration::minutes(if i + 1 == rows { 180 } else { 1 + i as i64 }),
                window_seconds: 60,
                acquisitions: 12_000,
                hold_p50_ms: Some(f.hold_p50_ms),
                hold_p99_ms: Some(f.hold_p99_ms),
                endpoint_spread: Some(f.endpoint_spread),
                returning_share: Some(f.returning_share),
                affinity_hit_rate: Some(f.affinity_hit_rate),
                miss_penalty_ms: Some(f.miss_penalty_ms),
                ..Default::default()
            };
            store.insert_snapshot(&row).await.expect("row");
        }
        ids.push(srv.id.clone());
    }
    let pools = Pools::new(plane.clone(), store.clone());
    for id in &ids {
        pools.sync_from_store(id).await.expect("sync");
    }
    let leadership = Leadership::new(plane.clone(), "leader", TIMING);
    leadership.tick().await.expect("leads");
    let snaps = poolgate_housekeeping::Snapshots::new(pools, leadership, Duration::from_secs(60), 7);
    snaps.tick().await; // baseline
    let report = snaps.tick().await;
    assert_eq!(report.optimized, 1, "{report:?}");
    let auto = store.get_server(&ids[0]).await.expect("read").expect("auto");
    let manual = store.get_server(&ids[1]).await.expect("read").expect("manual");
    assert_eq!(auto.pool.pool_strategy, Strategy::Sticky);
    assert_eq!(manual.pool.pool_strategy, Strategy::RoundRobin, "no flag, no change");
    let audit = store.list_audit(Some(&ids[0]), 10).await.expect("audit");
    let change = audit
        .iter()
        .find(|a| a.action == "pool.optimize")
        .expect("an audit row");
    assert_eq!(change.actor, "optimizer");
    // The next pass sees the change as recent (cooldown): no flapping back.
    assert_eq!(snaps.tick().await.optimized, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A seeded randomized run: four campaigners on their own connections, driven step by step; at
/// random the leader pauses (stops renewing, like SIGSTOP or a GC pause) for up to twice the TTL,
/// or dies and is replaced by a new process. Sampled every few milliseconds, never two act at
/// once; every acting leader writes with its fencing token, and the writes Redis accepts never
/// go back to an older term, whoever wakes up late. `POOLGATE_TEST_SEED` replays a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_random_pauses_and_kills_never_give_two_acting_leaders() {
    use poolgate_housekeeping::optimizer::sim::Rng;
    use std::sync::atomic::{AtomicBool, Ordering};
    let seed = match std::env::var("POOLGATE_TEST_SEED") {
        Ok(raw) => match raw.trim().strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => raw.trim().parse(),
        }
        .unwrap_or_else(|e| panic!("POOLGATE_TEST_SEED={raw}: {e}")),
        Err(_) => 0x1ead_5eed,
    };
    eprintln!("seed {seed:#x} (POOLGATE_TEST_SEED={seed:#x} replays the choices; timing is real)");
    let prefix = prefix();
    let pool = ServerId::parse("fenced").expect("id");
    let accepted: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let slots: Arc<std::sync::Mutex<Vec<Leadership>>> = Arc::default();
    let mut drivers = Vec::new();
    for i in 0..4u64 {
        let (prefix, pool, accepted, done, my_slots) = (
            prefix.clone(),
            pool.clone(),
            accepted.clone(),
            done.clone(),
            slots.clone(),
        );
        drivers.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed ^ (i + 1).wrapping_mul(0x9E37_79B9));
            let mut generation = 0;
            let mut me = Leadership::new(redis_plane(&prefix).await, format!("c{i}-g0"), TIMING);
            let plane = redis_plane(&prefix).await;
            my_slots.lock().expect("slots").push(me.clone());
            let index = i as usize;
            while !done.load(Ordering::Relaxed) {
                let _ = me.tick().await;
                if let Some(term) = me.term() {
                    // Act: a fenced write with our token.
                    if plane.fence(&pool, term).await.is_ok() {
                        accepted.lock().expect("accepted").push(term);
                    }
                    match rng.below(10) {
                        // Pause without renewing: up to 2 x TTL.
                        0 => {
                            let ms = rng.below(2 * TIMING.ttl.as_millis() as u64);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            // Woken up: a stale leader tries to write before noticing anything.
                            if plane.fence(&pool, term).await.is_ok() {
                                accepted.lock().expect("accepted").push(term);
                            }
                        }
                        // Die without resigning; a new process takes this slot.
                        1 => {
                            generation += 1;
                            me = Leadership::new(redis_plane(&prefix).await, format!("c{i}-g{generation}"), TIMING);
                            my_slots.lock().expect("slots")[index] = me.clone();
                        }
                        _ => {}
                    }
                }
                tokio::time::sleep(TIMING.heartbeat).await;
            }
        }));
        // Let each driver register in order.
        while slots.lock().expect("slots").len() <= i as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let started = Instant::now();
    let (mut samples, mut max_acting, mut terms_seen) = (0u64, 0usize, std::collections::BTreeSet::new());
    while started.elapsed() < Duration::from_secs(8) {
        let ls = slots.lock().expect("slots").clone();
        let acting: Vec<u64> = ls.iter().filter_map(Leadership::term).collect();
        max_acting = max_acting.max(acting.len());
        assert!(acting.len() <= 1, "seed {seed:#x}: two acting leaders {acting:?}");
        terms_seen.extend(acting);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    done.store(true, Ordering::Relaxed);
    for d in drivers {
        let _ = d.await;
    }
    let writes = accepted.lock().expect("accepted").clone();
    assert!(
        writes.windows(2).all(|w| w[0] <= w[1]),
        "seed {seed:#x}: an older term's write was accepted after a newer one: {writes:?}"
    );
    eprintln!(
        "seed {seed:#x}: {samples} samples, {} leadership terms, {} fenced writes accepted",
        terms_seen.len(),
        writes.len()
    );
    assert!(
        terms_seen.len() >= 2,
        "seed {seed:#x}: leadership never moved: {terms_seen:?}"
    );
    assert_eq!(max_acting, 1);
}

/// The term counter behind a token a pool has already seen (on Redis Cluster the counter and the
/// fences live on different shards, and a failover can lose the counter's last INCR): the new
/// leader's fence is refused, so it raises the counter past that token, resigns, and leads with a
/// higher term on its next heartbeat — never acting with a term the pools would refuse.
async fn a_term_counter_behind_a_fence_is_reseeded(plane: ControlPlane) {
    let (store, dir) = sqlite_store().await;
    let srv = server("reseed", 3600);
    store.create_server(&srv, "test").await.expect("server");
    Pools::new(plane.clone(), store.clone())
        .sync_from_store(&srv.id)
        .await
        .expect("sync");
    // A leader with term 50 fenced the pool; the counter then lost its increments.
    plane.fence(&srv.id, 50).await.expect("fence");
    let leader = Leadership::new(plane.clone(), "after-failover", TIMING);
    assert_eq!(leader.tick().await, None, "a term the pool refuses is not used");
    assert_eq!(plane.leader().await.expect("leader"), None, "it resigned the key");
    let term = leader.tick().await.expect("leads on the next heartbeat");
    assert!(term > 50, "the counter was re-seeded past the fence: {term}");
    plane
        .recycle(&srv.id, term, Duration::from_secs(3600), 10)
        .await
        .expect("its fenced writes are accepted");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_reseed_on_redis() {
    a_term_counter_behind_a_fence_is_reseeded(redis_plane(&prefix()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_reseed_on_the_embedded_plane() {
    a_term_counter_behind_a_fence_is_reseeded(ControlPlane::Embedded(Arc::new(EmbeddedControlPlane::new()))).await;
}
