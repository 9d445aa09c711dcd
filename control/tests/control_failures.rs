//! Failure behaviour of the Redis control plane (SPEC §8), against private Redis processes this
//! test starts, stops and restarts itself (so no other test is disturbed):
//! - Redis stopped mid-run: calls fail within the bounded timeout, no panic, no hang;
//! - Redis restarted empty: pools are rebuilt from the store on next use, no stuck capacity;
//! - Sentinel failover under load: the invariants hold afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolgate_control::{
    AcquireRequest, Acquired, Attempt, Committed, ControlError, ControlPlane, Outcome, PoolSpec, Pools,
    RedisControlPlane, SlotMeta, CALL_TIMEOUT,
};
use poolgate_loadtests::launch::{self, Proc};
use poolgate_shared::config::DatabaseKind;
use poolgate_shared::domain::pool::{PoolConfig, Strategy};
use poolgate_shared::domain::server::{Endpoint, Server, ServerId, UpstreamHeaders};
use poolgate_store::Store;

fn free_port() -> u16 {
    launch::free_port().expect("free port")
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("poolgate-fail-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    launch::redis_command(port, args).unwrap_or_else(|e| format!("(error: {e})"))
}

/// A private redis-server on `port` (the same port again is a restart), killed on drop.
fn start_redis(port: u16, dir: &std::path::Path, extra: &[&str]) -> Proc {
    launch::start_redis_on(port, dir, &format!("redis-{port}"), extra)
        .expect("redis-server starts (scripts/test.sh installs it)")
}

async fn connect(url: &str, prefix: &str) -> ControlPlane {
    let plane = ControlPlane::Redis(Arc::new(RedisControlPlane::connect(url, prefix).expect("client")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while plane.ping().await.is_err() {
        assert!(Instant::now() < deadline, "never connected to {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    plane
}

fn server(id: &str, max: u32) -> Server {
    let mut pool = PoolConfig::default();
    pool.pool_strategy = Strategy::LeastConnections;
    pool.pool_max_size = max;
    pool.pool_isolation = poolgate_shared::domain::pool::Isolation::Shared;
    Server {
        id: ServerId::parse(id).expect("id"),
        name: id.to_owned(),
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

/// Takes one lease, creating the slot if the pool asks for it.
async fn lease_once(pools: &Pools, pool: &ServerId, slot: &str) -> Result<String, ControlError> {
    let req = AcquireRequest::new("node-a", None);
    match pools.acquire(pool, &req, Duration::from_secs(2)).await? {
        Acquired::Leased(l) => Ok(l.id),
        Acquired::Create(r) => match pools.control.commit(pool, &r.id, slot, &SlotMeta::default()).await? {
            Committed::Leased(l) => Ok(l.id),
            Committed::Added(_) => Err(ControlError::Protocol("expected a lease".into())),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_fast_and_an_empty_restart_rebuilds_from_the_store() {
    let dir = temp_dir();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = Some(start_redis(port, &dir, &[]));

    let store = Store::connect(
        &format!("sqlite://{}", dir.join("db.sqlite").display()),
        &DatabaseKind::Sqlite,
    )
    .expect("store");
    store.migrate_up().await.expect("migrate");
    let srv = server("srv-fail", 3);
    store.create_server(&srv, "test").await.expect("server stored");
    let pools = Pools::new(connect(&url, "pgfail:").await, store.clone());

    // First use: the control plane has no configuration; it is synced from the store.
    let lease = lease_once(&pools, &srv.id, "slot-1").await.expect("lease");
    pools
        .control
        .release(&srv.id, &lease, Outcome::default())
        .await
        .expect("release");

    // Redis dies. Every call returns within the bound, as unavailable or unknown — never hangs.
    drop(redis.take());
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let res = pools
            .control
            .try_acquire(&srv.id, &AcquireRequest::new("node-a", None))
            .await;
        assert!(
            started.elapsed() <= CALL_TIMEOUT + Duration::from_millis(500),
            "call took {:?}",
            started.elapsed()
        );
        match res {
            Err(e @ (ControlError::Unavailable(_) | ControlError::OutcomeUnknown(_))) => kinds.push(e.to_string()),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
    assert!(
        kinds.iter().any(|k| k.contains("unavailable")),
        "settles on unavailable: {kinds:?}"
    );
    let started = Instant::now();
    assert!(pools.control.ping().await.is_err());
    assert!(started.elapsed() <= CALL_TIMEOUT + Duration::from_millis(500));

    // Redis comes back empty on the same port: the client reconnects by itself and the pool is
    // rebuilt from the store on next use, with its full capacity (no stuck leases).
    let _redis = start_redis(port, &dir, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pools.control.ping().await.is_err() {
        assert!(Instant::now() < deadline, "client did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(
            lease_once(&pools, &srv.id, &format!("slot-new-{i}"))
                .await
                .expect("lease after restart"),
        );
    }
    let stats = pools.control.stats(&srv.id).await.expect("stats");
    assert_eq!((stats.configured, stats.slots, stats.leases), (true, 3, 3), "{stats:?}");
    let full = pools
        .control
        .try_acquire(&srv.id, &AcquireRequest::new("node-a", None))
        .await
        .expect("attempt");
    assert!(matches!(full, Attempt::Wait { in_use: 3, limit: 3 }), "{full:?}");
    pools.control.close().await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_sentinel(port: u16, primary: u16, dir: &std::path::Path) -> Proc {
    launch::start_sentinel_on(port, primary, "pgfail", dir, &format!("sentinel-{port}")).expect("redis-sentinel starts")
}

/// Sentinel failover while several tasks acquire and release: afterwards the pool still
/// satisfies I1 and I2 and, once expired leases are reclaimed, has its capacity back.
///
/// What a failover can lose: replication is asynchronous, so the last writes acknowledged by the
/// old primary may be missing on the new one — a granted lease (its release later changes
/// nothing), a release (the lease stays until its TTL and is then reclaimed, I4), or a commit (the
/// slot is missing; the node's later release is a no-op and its upstream session is closed by the
/// upstream's own idle timeout). None of these can break I1/I2: every state the new primary has
/// was a consistent state of the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_load_keeps_the_invariants() {
    let dir = temp_dir();
    let (p1, p2) = (free_port(), free_port());
    let fast = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"];
    let _primary = start_redis(p1, &dir.join("."), &fast);
    let replica_dir = dir.join("replica");
    std::fs::create_dir_all(&replica_dir).expect("dir");
    let mut args = fast.to_vec();
    let primary_port = p1.to_string();
    args.extend(["--replicaof", "127.0.0.1", &primary_port]);
    let _replica = start_redis(p2, &replica_dir, &args);
    let sentinel_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _sentinels: Vec<Proc> = sentinel_ports.iter().map(|&p| start_sentinel(p, p1, &dir)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let known = redis_cli(sentinel_ports[0], &["sentinel", "replicas", "pgfail"]).contains(&p2.to_string());
        let peers = redis_cli(sentinel_ports[0], &["sentinel", "sentinels", "pgfail"])
            .matches("name")
            .count();
        if known && peers >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sentinels never saw the replica and each other"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!(
        "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=pgfail&node=127.0.0.1:{}&node=127.0.0.1:{}",
        sentinel_ports[0], sentinel_ports[1], sentinel_ports[2]
    );
    let plane = connect(&url, "pgfo:").await;
    let pool = ServerId::parse("failover").expect("id");
    let mut spec = PoolSpec::for_server(&server("failover", 4));
    spec.lease_ttl_ms = 1_500;
    plane.sync(&pool, &spec).await.expect("sync");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (plane, pool, spec, stop) = (plane.clone(), pool.clone(), spec.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = AcquireRequest::new(&format!("task-{t}"), None);
                let attempt = plane.try_acquire(&pool, &req).await;
                let lease = match attempt {
                    Ok(Attempt::Leased(l)) => Some(l.id),
                    Ok(Attempt::Create(r)) => {
                        match plane
                            .commit(&pool, &r.id, &uuid::Uuid::new_v4().to_string(), &SlotMeta::default())
                            .await
                        {
                            Ok(Committed::Leased(l)) => Some(l.id),
                            _ => None,
                        }
                    }
                    Err(ControlError::NotConfigured) => {
                        let _ = plane.sync(&pool, &spec).await;
                        None
                    }
                    _ => None,
                };
                if let Some(id) = lease {
                    if plane.release(&pool, &id, Outcome::default()).await.is_ok() {
                        ok += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ok
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(redis_cli(sentinel_ports[0], &["sentinel", "failover", "pgfail"]), "OK");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let addr = redis_cli(sentinel_ports[0], &["sentinel", "get-master-addr-by-name", "pgfail"]);
        if addr.contains(&p2.to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "failover did not complete: {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Keep the load on across the switch, then stop it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_ok = 0;
    for t in tasks {
        total_ok += t.await.expect("task");
    }
    assert!(total_ok > 0);

    // Wait until the client works against the new primary.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        if let Ok(s) = plane.stats(&pool).await {
            if plane.sync(&pool, &spec).await.is_ok() {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "no working primary after the failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(stats.slots + stats.reservations <= 4, "I1 after failover: {stats:?}");
    for slot in plane.slots(&pool).await.expect("slots") {
        assert!(slot.leases <= 1, "I2 after failover: {slot:?}");
    }
    // Past the lease TTL, reclaim heals whatever the switch left behind (I4).
    tokio::time::sleep(Duration::from_millis(spec.lease_ttl_ms + 200)).await;
    plane.reclaim(&pool, 100).await.expect("reclaim");
    let stats = plane.stats(&pool).await.expect("stats");
    assert_eq!(stats.leases, 0, "{stats:?}");
    let mut held = Vec::new();
    for i in 0..4 {
        match plane
            .try_acquire(&pool, &AcquireRequest::new("after", None))
            .await
            .expect("attempt")
        {
            Attempt::Leased(l) => held.push(l.id),
            Attempt::Create(r) => {
                let c = plane
                    .commit(&pool, &r.id, &format!("after-{i}"), &SlotMeta::default())
                    .await
                    .expect("commit");
                assert!(matches!(c, Committed::Leased(_)));
                held.push(r.id);
            }
            Attempt::Wait { .. } => panic!("capacity lost after failover: {held:?}"),
        }
    }
    plane.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
