//! Mixed versions (SPEC §8): during a blue-green or canary rollout, nodes of two releases share
//! one Redis. A test double plays the other release: it writes slot records in an older layout
//! (fields this release added are missing) with a field from a newer one, and calls the scripts
//! with the older argument lists. The current release serves the pool without errors, keeps the
//! unknown field, and its invariants and counters hold.

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, HashesInterface};
use fred::prelude::{Builder, Config as FredConfig};
use fred::types::scripts::Script;
use fred::types::Value;
use poolgate_control::keys::PoolKeys;
use poolgate_control::{
    AcquireRequest, Attempt, Committed, ControlPlane, Outcome, PoolSpec, RedisControlPlane, SlotMeta,
};
use poolgate_shared::domain::pool::{Isolation, Strategy};
use poolgate_shared::domain::server::ServerId;

fn redis_url() -> String {
    std::env::var("POOLGATE_TEST_REDIS_URL").expect("POOLGATE_TEST_REDIS_URL is not set: run scripts/test.sh")
}

/// The script an "other release" node runs: the same files, called with its own arguments.
fn script(file: &str) -> Script {
    let body = match file {
        "acquire" => include_str!("../src/lua/acquire.lua"),
        "release" => include_str!("../src/lua/release.lua"),
        other => panic!("no script {other}"),
    };
    Script::from_lua(format!("{}\n{}", include_str!("../src/lua/prelude.lua"), body))
}

#[tokio::test]
async fn an_older_layout_and_older_calls_share_the_pool() {
    let prefix = format!("pgmix:{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let plane = ControlPlane::Redis(Arc::new(
        RedisControlPlane::connect(&redis_url(), &prefix).expect("client"),
    ));
    for _ in 0..200 {
        if plane.ping().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pool = ServerId::parse("mixed").expect("id");
    let spec = PoolSpec {
        strategy: Strategy::LeastConnections,
        isolation: Isolation::Shared,
        max_size: 2,
        capacity: 2,
        lease_ttl_ms: 30_000,
        idle_ttl_ms: 60_000,
        reservation_ttl_ms: 30_000,
        sticky_c_milli: 1250,
        endpoint_weights: vec![1],
        identity: None,
        fairness: Default::default(),
    };
    plane.sync(&pool, &spec).await.expect("sync");
    // The current release creates one slot.
    let req = AcquireRequest::new("new-node", None);
    let Attempt::Create(r) = plane.try_acquire(&pool, &req).await.expect("acquire") else {
        panic!("an empty pool creates")
    };
    let Committed::Leased(lease) = plane
        .commit(&pool, &r.id, "slot-1", &SlotMeta::default())
        .await
        .expect("commit")
    else {
        panic!("a lease")
    };
    plane
        .release(&pool, &lease.id, Outcome::default())
        .await
        .expect("release");

    // The other release rewrites the record: without this release's optional fields, with one
    // of its own.
    let fred = Builder::from_config(FredConfig::from_url(&redis_url()).expect("url"))
        .build()
        .expect("fred");
    fred.init().await.expect("connect");
    let keys = PoolKeys::new(&prefix, &pool);
    let raw: Vec<u8> = fred.hget(&keys.keys[1], "slot-1").await.expect("slot record");
    let mut record: serde_json::Map<String, serde_json::Value> = rmp_serde::from_slice(&raw).expect("msgpack map");
    for field in ["v", "w", "ew", "er", "pass", "used", "m"] {
        assert!(record.remove(field).is_some(), "{field} was written");
    }
    record.insert("zz_next_release".into(), serde_json::json!(7));
    let old = rmp_serde::to_vec_named(&record).expect("encode");
    let _: i64 = fred.hset(&keys.keys[1], ("slot-1", old)).await.expect("write");

    // The other release acquires with its argument list (no wait time) and releases with its
    // own (no affinity report).
    let acquire = script("acquire");
    let reply: Value = acquire
        .evalsha_with_reload(&fred, keys.keys.clone(), vec!["old-lease", "old-node", ""])
        .await
        .expect("older acquire");
    let first = reply.into_array().into_iter().next().and_then(|v| v.into_string());
    assert_eq!(first.as_deref(), Some("L"), "the older call got a lease");

    // Meanwhile the current release reads the record and leases the same slot (capacity 2).
    let slots = plane.slots(&pool).await.expect("slots");
    assert_eq!(slots.len(), 1);
    assert_eq!((slots[0].leases, slots[0].weight), (1, 1.0), "{slots:?}");
    let again = AcquireRequest::new("new-node", None);
    let Attempt::Leased(second) = plane.try_acquire(&pool, &again).await.expect("acquire") else {
        panic!("a lease on the shared slot")
    };
    assert_eq!(second.slot.leases, 2, "I2 counts both releases' leases");
    let waiting = plane
        .try_acquire(&pool, &AcquireRequest::new("new-node", None))
        .await
        .expect("acquire");
    assert!(
        matches!(waiting, Attempt::Create(_) | Attempt::Wait { .. }),
        "{waiting:?}"
    );

    let release = script("release");
    let reply: Value = release
        .evalsha_with_reload(&fred, keys.keys.clone(), vec!["old-lease", "12", "0", "0"])
        .await
        .expect("older release");
    assert_eq!(reply.into_array().first().and_then(|v| v.as_i64()), Some(1));
    plane
        .release(&pool, &second.id, Outcome::default())
        .await
        .expect("release");

    // The newer release's field survived both releases' writes; the counters add up.
    let raw: Vec<u8> = fred.hget(&keys.keys[1], "slot-1").await.expect("slot record");
    let record: serde_json::Map<String, serde_json::Value> = rmp_serde::from_slice(&raw).expect("msgpack map");
    assert_eq!(record.get("zz_next_release"), Some(&serde_json::json!(7)), "{record:?}");
    let stats = plane.stats(&pool).await.expect("stats");
    assert_eq!(
        (stats.leases, stats.acquisitions, stats.releases),
        (0, 3, 3),
        "{stats:?}"
    );
    assert_eq!(
        stats.hold.count(),
        1,
        "only the older release's release reported a time"
    );
    let _ = fred.quit().await;
}
