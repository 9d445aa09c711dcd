//! The session history pass (`mcp_sessions`) and its store methods, on SQLite and PostgreSQL,
//! with the embedded and the Redis control plane.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use poolgate_control::{
    AcquireRequest, Attempt, Committed, ControlPlane, EmbeddedControlPlane, Lease, Pools, RedisControlPlane, SlotMeta,
    SlotState,
};
use poolgate_housekeeping::{History, Leadership, Timing};
use poolgate_shared::config::DatabaseKind;
use poolgate_shared::domain::pool::{Isolation, PoolConfig, Strategy};
use poolgate_shared::domain::server::{Endpoint, Server, ServerId, UpstreamHeaders};
use poolgate_store::{SessionRow, Store, StoredSession};

const TIMING: Timing = Timing {
    ttl: Duration::from_millis(1500),
    heartbeat: Duration::from_millis(200),
    renew_deadline: Duration::from_millis(1000),
};

const PLAIN: &str = "http://127.0.0.1:9/mcp";
const WITH_CREDENTIALS: &str = "http://bob:pw@127.0.0.1:10/mcp?api_key=SECRET";
const REDACTED: &str = "http://***:***@127.0.0.1:10/mcp?api_key=***";

/// A test database, dropped by [`TestDb::drop_now`].
enum TestDb {
    Sqlite(std::path::PathBuf),
    Postgres { admin: String, name: String },
}

impl TestDb {
    async fn sqlite() -> (Store, TestDb) {
        let dir = std::env::temp_dir().join(format!("pghist-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::connect(
            &format!("sqlite://{}", dir.join("db.sqlite").display()),
            &DatabaseKind::Sqlite,
        )
        .expect("store");
        store.migrate_up().await.expect("migrate");
        (store, TestDb::Sqlite(dir))
    }

    async fn postgres() -> (Store, TestDb) {
        use sqlx::Connection as _;
        let admin = std::env::var("POOLGATE_TEST_PG_URL").expect("POOLGATE_TEST_PG_URL: run scripts/test.sh");
        let name = format!("pghist_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("pg");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create");
        let mut url = url::Url::parse(&admin).expect("url");
        url.set_path(&name);
        let store = Store::connect(url.as_str(), &DatabaseKind::Postgres).expect("store");
        store.migrate_up().await.expect("migrate");
        (store, TestDb::Postgres { admin, name })
    }

    async fn drop_now(self, store: Store) {
        store.close().await;
        match self {
            TestDb::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            TestDb::Postgres { admin, name } => {
                use sqlx::Connection as _;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            }
        }
    }
}

async fn redis_plane() -> ControlPlane {
    let url =
        std::env::var("POOLGATE_TEST_REDIS_URL").expect("POOLGATE_TEST_REDIS_URL is not set: run scripts/test.sh");
    let prefix = format!("pghist:{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let plane = ControlPlane::Redis(Arc::new(RedisControlPlane::connect(&url, &prefix).expect("client")));
    for _ in 0..200 {
        if plane.ping().await.is_ok() {
            return plane;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis unreachable");
}

fn embedded_plane() -> ControlPlane {
    ControlPlane::Embedded(Arc::new(EmbeddedControlPlane::new()))
}

fn server(id: &str) -> Server {
    Server {
        id: ServerId::parse(id).expect("id"),
        name: id.into(),
        endpoints: vec![
            Endpoint {
                url: PLAIN.into(),
                weight: 1,
            },
            Endpoint {
                url: WITH_CREDENTIALS.into(),
                weight: 1,
            },
        ],
        upstream_headers: UpstreamHeaders::default(),
        pool_defaults: Default::default(),
        pool: PoolConfig {
            pool_enabled: true,
            pool_strategy: Strategy::LeastConnections,
            pool_isolation: Isolation::Shared,
            pool_recycle_seconds: 3600,
            pool_lease_ttl: 2,
            ..PoolConfig::default()
        },
        created_at: poolgate_shared::domain::now(),
        updated_at: poolgate_shared::domain::now(),
    }
}

/// A new slot `id`, created for a lease that is returned (held).
async fn new_slot(plane: &ControlPlane, pool: &ServerId, id: &str, meta: &SlotMeta) -> Lease {
    match plane
        .try_acquire(pool, &AcquireRequest::new("node", None))
        .await
        .expect("attempt")
    {
        Attempt::Create(r) => match plane.commit(pool, &r.id, id, meta).await.expect("commit") {
            Committed::Leased(l) => l,
            other => panic!("{other:?}"),
        },
        other => panic!("expected a reservation: {other:?}"),
    }
}

/// A registered pool, its leader and the pass (retention 7 days).
async fn setup(store: &Store, plane: &ControlPlane, id: &str) -> (Server, History) {
    let srv = server(id);
    store.create_server(&srv, "test").await.expect("server");
    let pools = Pools::new(plane.clone(), store.clone());
    pools.sync_from_store(&srv.id).await.expect("sync");
    let leadership = Leadership::new(plane.clone(), "leader", TIMING);
    leadership.tick().await.expect("leads");
    let history = History {
        pools,
        leadership,
        retention_days: 7,
        deadline: Duration::from_secs(10),
    };
    (srv, history)
}

/// One pass as the leader (renewing first; after a sleep past the TTL the renew fails and the
/// next heartbeat campaigns again).
async fn pass(history: &History) -> poolgate_housekeeping::HistoryReport {
    if history.leadership.tick().await.is_none() {
        history.leadership.tick().await.expect("leads again");
    }
    history.tick().await
}

async fn rows_by_id(store: &Store, server: &str) -> BTreeMap<String, StoredSession> {
    store
        .list_sessions(server, 10_000)
        .await
        .expect("list")
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Slots created and leased → one open row each with the slot's endpoint (credentials redacted),
/// protocol version, reuse count, status and creation time; slots that leave the pool (marked
/// retired, released while unhealthy, reclaimed after their lease expired) → their rows closed
/// with reason "gone" by the next pass, the rest untouched; closed rows stay closed.
async fn history_records_open_sessions_and_closes_gone_ones(store: Store, plane: ControlPlane) {
    let (srv, history) = setup(&store, &plane, "hist").await;
    let pool = srv.id.clone();
    let meta = |endpoint: Option<&str>, version: &str| SlotMeta {
        session_id: Some(format!("upstream-{version}")),
        protocol_version: Some(version.into()),
        endpoint: endpoint.map(str::to_owned),
        init: None,
    };
    let mut leases = Vec::new();
    for (i, m) in [
        meta(None, "2025-06-18"), // no endpoint in the meta: the server's endpoint at its index
        meta(Some(WITH_CREDENTIALS), "2025-06-18"),
        meta(Some(PLAIN), "2025-03-26"),
        meta(Some(PLAIN), "2025-06-18"),
        meta(Some(PLAIN), "2025-11-25"),
    ]
    .iter()
    .enumerate()
    {
        leases.push(new_slot(&plane, &pool, &format!("s{i}"), m).await);
    }
    // s0 and s4 idle, then three more leases among them; s1..s3 stay leased and change state.
    for i in [0, 4] {
        plane
            .release(&pool, &leases[i].id, Default::default())
            .await
            .expect("release");
    }
    for _ in 0..3 {
        match plane
            .try_acquire(&pool, &AcquireRequest::new("node", None))
            .await
            .expect("attempt")
        {
            Attempt::Leased(l) => {
                assert!(l.slot.id == "s0" || l.slot.id == "s4", "{l:?}");
                plane.release(&pool, &l.id, Default::default()).await.expect("release");
            }
            other => panic!("{other:?}"),
        }
    }
    for (slot, state) in [
        ("s1", SlotState::Unhealthy),
        ("s2", SlotState::Draining),
        ("s3", SlotState::Retired),
    ] {
        assert!(plane.mark(&pool, slot, state).await.expect("mark").changed);
    }
    let slots = plane.slots(&pool).await.expect("slots");
    assert_eq!(slots.len(), 5, "{slots:?}");
    let pool_id = store.pool_row(&pool).await.expect("pool row").expect("pool").0;

    let report = pass(&history).await;
    assert_eq!((report.pools, report.recorded, report.closed), (1, 5, 0), "{report:?}");
    let rows = rows_by_id(&store, "hist").await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    let expected = [
        (
            "s0",
            "healthy",
            srv.endpoints[slots.iter().find(|s| s.id == "s0").expect("s0").endpoint as usize]
                .url
                .as_str(),
            "2025-06-18",
        ),
        ("s1", "unhealthy", REDACTED, "2025-06-18"),
        ("s2", "draining", PLAIN, "2025-03-26"),
        ("s3", "retiring", PLAIN, "2025-06-18"),
        ("s4", "healthy", PLAIN, "2025-11-25"),
    ];
    for (id, status, endpoint, version) in expected {
        let row = &rows[id];
        let slot = slots.iter().find(|s| s.id == id).expect("slot");
        assert_eq!(
            (
                row.status.as_str(),
                row.endpoint_url.as_str(),
                row.protocol_version.as_deref()
            ),
            (status, endpoint, Some(version)),
            "{row:?}"
        );
        assert_eq!(row.reuse_count, slot.reuse_count as i64, "{row:?} vs {slot:?}");
        assert_eq!(ms(row.created_at), slot.created_ms, "{row:?}");
        assert_eq!(row.server_id, "hist");
        assert_eq!(row.pool_id.as_deref(), Some(pool_id.as_str()));
        assert_eq!((row.closed_at, row.close_reason.as_deref()), (None, None), "{row:?}");
        assert_eq!(row.last_health_check, None);
    }
    for id in ["s1", "s2", "s3"] {
        assert_eq!(rows[id].reuse_count, 1, "leased once: {:?}", rows[id]);
    }
    assert_eq!(
        rows["s0"].reuse_count + rows["s4"].reuse_count,
        5,
        "two creations and three more leases: {rows:?}"
    );
    // Nothing changed: the next pass rewrites the same rows, closes nothing.
    let again = pass(&history).await;
    assert_eq!((again.recorded, again.closed), (5, 0), "{again:?}");
    assert_eq!(rows_by_id(&store, "hist").await, rows);

    // Slots leave: s0 marked retired while idle, s1 released while unhealthy, s2 (draining) and
    // s3 (retired) reclaimed once their leases expired. s4 stays.
    assert!(plane.mark(&pool, "s0", SlotState::Retired).await.expect("mark").changed);
    plane
        .release(&pool, &leases[1].id, Default::default())
        .await
        .expect("release");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let reclaimed = plane.reclaim(&pool, 100).await.expect("reclaim");
    assert_eq!(reclaimed.leases, 2, "{reclaimed:?}");
    let left: Vec<String> = plane
        .slots(&pool)
        .await
        .expect("slots")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ["s4"]);

    let before = poolgate_shared::domain::now();
    let report = pass(&history).await;
    let after = poolgate_shared::domain::now();
    assert_eq!(
        (report.recorded, report.closed, report.deleted),
        (1, 4, 0),
        "{report:?}"
    );
    let now_rows = rows_by_id(&store, "hist").await;
    assert_eq!(now_rows.len(), 5);
    for id in ["s0", "s1", "s2", "s3"] {
        let row = &now_rows[id];
        assert_eq!(row.close_reason.as_deref(), Some("gone"), "{row:?}");
        assert_eq!(row.status, "closed");
        let closed = row.closed_at.expect("closed_at");
        assert!(
            before <= closed && closed <= after,
            "{closed} not in [{before}, {after}]"
        );
        // What the last pass saw stays.
        assert_eq!(
            (row.endpoint_url.as_str(), row.reuse_count, row.created_at),
            (
                rows[id].endpoint_url.as_str(),
                rows[id].reuse_count,
                rows[id].created_at
            )
        );
    }
    let s4 = &now_rows["s4"];
    assert_eq!(
        (s4.status.as_str(), s4.closed_at, s4.close_reason.as_deref()),
        ("healthy", None, None)
    );
    // Closed rows stay closed, with their first close time.
    let third = pass(&history).await;
    assert_eq!((third.recorded, third.closed), (1, 0), "{third:?}");
    assert_eq!(rows_by_id(&store, "hist").await, now_rows);
    plane.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_sqlite_with_the_embedded_plane() {
    let (store, db) = TestDb::sqlite().await;
    history_records_open_sessions_and_closes_gone_ones(store.clone(), embedded_plane()).await;
    db.drop_now(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_sqlite_with_redis() {
    let (store, db) = TestDb::sqlite().await;
    history_records_open_sessions_and_closes_gone_ones(store.clone(), redis_plane().await).await;
    db.drop_now(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_postgres_with_redis() {
    let (store, db) = TestDb::postgres().await;
    history_records_open_sessions_and_closes_gone_ones(store.clone(), redis_plane().await).await;
    db.drop_now(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_postgres_with_the_embedded_plane() {
    let (store, db) = TestDb::postgres().await;
    history_records_open_sessions_and_closes_gone_ones(store.clone(), embedded_plane()).await;
    db.drop_now(store).await;
}

/// A deleted server's open rows are closed with "server deleted": while its pool is still
/// registered, and also when the pool left the control plane before any pass saw it.
async fn history_closes_a_deleted_servers_rows(store: Store) {
    let plane = embedded_plane();
    let (srv, history) = setup(&store, &plane, "doomed").await;
    let _held = new_slot(&plane, &srv.id, "d0", &SlotMeta::default()).await;
    assert_eq!(pass(&history).await.recorded, 1);
    // Rows of a server that never was registered in this control plane and no longer exists.
    let now = poolgate_shared::domain::now();
    let ghost = SessionRow {
        id: "g0".into(),
        endpoint_url: PLAIN.into(),
        protocol_version: None,
        status: "healthy".into(),
        reuse_count: 2,
        created_at: now,
        last_health_check: None,
    };
    store
        .record_sessions("ghost", None, std::slice::from_ref(&ghost), "gone", now)
        .await
        .expect("ghost row");
    assert!(store.delete_server(&srv.id, "test").await.expect("delete"));
    let report = pass(&history).await;
    assert_eq!(report.closed, 2, "{report:?}");
    for (server, id) in [("doomed", "d0"), ("ghost", "g0")] {
        let rows = store.list_sessions(server, 10).await.expect("list");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].id, id);
        assert_eq!(rows[0].close_reason.as_deref(), Some("server deleted"), "{rows:?}");
        assert!(rows[0].closed_at.is_some());
        // The pool row went with the server: the history row stays, its pool id cleared.
        assert_eq!(rows[0].pool_id, None);
    }
    assert_eq!(pass(&history).await.closed, 0, "closed once");
}

#[tokio::test]
async fn history_of_a_deleted_server_on_sqlite() {
    let (store, db) = TestDb::sqlite().await;
    history_closes_a_deleted_servers_rows(store.clone()).await;
    db.drop_now(store).await;
}

#[tokio::test]
async fn history_of_a_deleted_server_on_postgres() {
    let (store, db) = TestDb::postgres().await;
    history_closes_a_deleted_servers_rows(store.clone()).await;
    db.drop_now(store).await;
}

/// Retention (the pass, 7 days): rows closed more than 7 days ago go; rows closed more recently
/// and open rows stay, however old.
async fn history_retention_deletes_only_old_closed_rows(store: Store) {
    // The server exists (the deleted-server sweep leaves its rows alone) but its pool is not in
    // the control plane (no per-pool pass closes its open row).
    let plane = embedded_plane();
    store.create_server(&server("kept"), "test").await.expect("server");
    let history = History {
        pools: Pools::new(plane.clone(), store.clone()),
        leadership: Leadership::new(plane.clone(), "leader", TIMING),
        retention_days: 7,
        deadline: Duration::from_secs(10),
    };
    let now = poolgate_shared::domain::now();
    let days = |n: i64| now - chrono::Duration::days(n);
    let row = |id: &str| SessionRow {
        id: id.into(),
        endpoint_url: PLAIN.into(),
        protocol_version: Some("2025-06-18".into()),
        status: "healthy".into(),
        reuse_count: 1,
        created_at: days(30),
        last_health_check: None,
    };
    let (old, recent, open) = (row("old"), row("recent"), row("open"));
    store
        .record_sessions("kept", None, &[old, recent.clone(), open.clone()], "gone", days(30))
        .await
        .expect("rows");
    // "old" closed 10 days ago, "recent" 6 days ago; "open" stays open (created 30 days ago).
    let r = store
        .record_sessions("kept", None, &[recent, open], "gone", days(10))
        .await
        .expect("close old");
    assert_eq!(r.closed, 1);
    assert!(store.close_session("recent", "gone", days(6)).await.expect("close"));
    let report = pass(&history).await;
    assert_eq!((report.pools, report.closed, report.deleted), (0, 0, 1), "{report:?}");
    let rows = rows_by_id(&store, "kept").await;
    assert_eq!(rows.keys().map(String::as_str).collect::<Vec<_>>(), ["open", "recent"]);
    assert_eq!(rows["recent"].closed_at.map(ms), Some(ms(days(6))));
    assert_eq!(rows["open"].closed_at, None);
    // The store method alone: a cutoff after "recent" takes it too, never the open row.
    assert_eq!(store.delete_closed_sessions_before(days(5)).await.expect("delete"), 1);
    assert_eq!(rows_by_id(&store, "kept").await.keys().collect::<Vec<_>>(), ["open"]);
}

#[tokio::test]
async fn history_retention_on_sqlite() {
    let (store, db) = TestDb::sqlite().await;
    history_retention_deletes_only_old_closed_rows(store.clone()).await;
    db.drop_now(store).await;
}

#[tokio::test]
async fn history_retention_on_postgres() {
    let (store, db) = TestDb::postgres().await;
    history_retention_deletes_only_old_closed_rows(store.clone()).await;
    db.drop_now(store).await;
}

/// `record_sessions` itself: more rows than one statement holds, updates in place, a closed row
/// is never reopened, another server's row with the same id is left alone, an unknown health
/// check time keeps the stored one; `close_session` closes once.
async fn history_store_batches_and_edge_cases(store: Store) {
    let now = poolgate_shared::domain::now();
    let row = |i: usize| SessionRow {
        id: format!("b{i:04}"),
        endpoint_url: PLAIN.into(),
        protocol_version: Some("2025-06-18".into()),
        status: "healthy".into(),
        reuse_count: i as i64,
        created_at: now - chrono::Duration::seconds(i as i64),
        last_health_check: (i == 0).then_some(now),
    };
    let many: Vec<SessionRow> = (0..1203).map(row).collect();
    let r = store
        .record_sessions("bulk", None, &many, "gone", now)
        .await
        .expect("record");
    assert_eq!((r.upserted, r.closed), (1203, 0));
    // Keep the first 600, updated; the other 603 are closed.
    let mut kept: Vec<SessionRow> = many[..600].to_vec();
    for s in &mut kept {
        s.reuse_count += 100;
        s.status = "draining".into();
        s.last_health_check = None;
    }
    let later = now + chrono::Duration::seconds(5);
    let r = store
        .record_sessions("bulk", None, &kept, "gone", later)
        .await
        .expect("record");
    assert_eq!((r.upserted, r.closed), (600, 603));
    let rows = rows_by_id(&store, "bulk").await;
    assert_eq!(rows.len(), 1203);
    let open: Vec<&StoredSession> = rows.values().filter(|r| r.closed_at.is_none()).collect();
    assert_eq!(open.len(), 600);
    assert!(open
        .iter()
        .all(|r| r.status == "draining" && r.reuse_count >= 100 && r.id.as_str() < "b0600"));
    assert_eq!(
        rows["b0000"].last_health_check.map(ms),
        Some(ms(now)),
        "unknown keeps the stored time"
    );
    assert_eq!(rows["b0007"].reuse_count, 107);
    let closed = &rows["b0600"];
    assert_eq!(
        (
            closed.closed_at.map(ms),
            closed.close_reason.as_deref(),
            closed.status.as_str(),
            closed.reuse_count
        ),
        (Some(ms(later)), Some("gone"), "closed", 600)
    );
    // A closed row listed again (a stale read) stays closed and unchanged.
    let r = store
        .record_sessions("bulk", None, &[many[600].clone()], "gone", later)
        .await
        .expect("record");
    assert_eq!(
        (r.upserted, r.closed),
        (0, 600),
        "the kept 600 are not listed this time"
    );
    assert_eq!(rows_by_id(&store, "bulk").await["b0600"], *closed);
    // Another server listing the same id does not take the row over.
    let r = store
        .record_sessions("other", None, &[many[1].clone()], "gone", later)
        .await
        .expect("record");
    assert_eq!(r.upserted, 0);
    assert!(store.list_sessions("other", 10).await.expect("list").is_empty());
    // close_session: once.
    let r = store
        .record_sessions("single", None, &[row(9000)], "gone", now)
        .await
        .expect("record");
    assert_eq!(r.upserted, 1);
    assert!(store.close_session("b9000", "unhealthy", later).await.expect("close"));
    assert!(!store.close_session("b9000", "again", now).await.expect("close"));
    assert!(!store.close_session("nope", "again", now).await.expect("close"));
    let single = store.list_sessions("single", 10).await.expect("list");
    assert_eq!(
        (single[0].close_reason.as_deref(), single[0].closed_at.map(ms)),
        (Some("unhealthy"), Some(ms(later)))
    );
    // Newest first.
    let listed = store.list_sessions("bulk", 3).await.expect("list");
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["b0000", "b0001", "b0002"]
    );
}

#[tokio::test]
async fn history_store_on_sqlite() {
    let (store, db) = TestDb::sqlite().await;
    history_store_batches_and_edge_cases(store.clone()).await;
    db.drop_now(store).await;
}

#[tokio::test]
async fn history_store_on_postgres() {
    let (store, db) = TestDb::postgres().await;
    history_store_batches_and_edge_cases(store.clone()).await;
    db.drop_now(store).await;
}

/// The migration is reversible: down drops the column and its indexes, up brings them back.
async fn history_migration_round_trips(store: Store) {
    let reverted = store.migrate_down(Some(20260101000007)).await.expect("down");
    assert!(reverted.contains(&20260101000008), "{reverted:?}");
    assert!(store.list_sessions("x", 1).await.is_err(), "close_reason gone");
    store.migrate_up().await.expect("up");
    assert!(store.list_sessions("x", 1).await.expect("list").is_empty());
}

#[tokio::test]
async fn history_migration_on_sqlite() {
    let (store, db) = TestDb::sqlite().await;
    history_migration_round_trips(store.clone()).await;
    db.drop_now(store).await;
}

#[tokio::test]
async fn history_migration_on_postgres() {
    let (store, db) = TestDb::postgres().await;
    history_migration_round_trips(store.clone()).await;
    db.drop_now(store).await;
}
