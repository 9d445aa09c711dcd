//! Fairness: per-user quotas (client sessions, requests in flight), the unused-session TTL and the
//! per-user rate limit (GCRA), on every backend and across nodes.

use std::time::Duration;

use poolgate_control::slots::binding_key;
use poolgate_control::{AcquireRequest, Attempt, ControlError, Fairness, PoolSpec, QuotaKind};
use poolgate_shared::domain::pool::{Isolation, Strategy};
use poolgate_shared::domain::server::ServerId;

use crate::harness::{commit_lease, leased, pool_id, release, reserved, spec, Backend, Plane};

fn fair(isolation: Isolation, max: u32, fairness: Fairness) -> PoolSpec {
    PoolSpec {
        isolation,
        fairness,
        ..spec(Strategy::RoundRobin, max)
    }
}

fn as_user(user: &str, key: Option<&str>) -> AcquireRequest {
    AcquireRequest {
        user: Some(user.to_owned()),
        ..AcquireRequest::new("node-a", key)
    }
}

/// A new client session for `user`: created, committed and released; returns its binding key.
async fn open_session(cp: &poolgate_control::ControlPlane, pool: &ServerId, user: &str, slot: &str) -> String {
    let key = binding_key::session(user, pool);
    let resv = reserved(cp, pool, &as_user(user, Some(&key))).await;
    let lease = commit_lease(cp, pool, &resv, slot).await;
    release(cp, pool, &lease.id).await;
    key
}

/// alice at her session quota is refused a new session while bob is served; ending one of
/// hers lets her open another. Her existing sessions keep working at the quota.
async fn session_quota_refuses_only_the_user_at_it(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    let fairness = Fairness {
        sessions_per_user: 2,
        ..Default::default()
    };
    cp.sync(&pool, &fair(Isolation::Session, 10, fairness))
        .await
        .expect("sync");
    let a1 = open_session(&cp, &pool, "alice", "a1").await;
    let _a2 = open_session(&cp, &pool, "alice", "a2").await;
    let third = binding_key::session("alice", &pool);
    match cp.try_acquire(&pool, &as_user("alice", Some(&third))).await {
        Err(ControlError::OverQuota {
            quota: QuotaKind::Sessions,
            limit: 2,
        }) => {}
        other => panic!("alice's third session: expected the sessions quota, got {other:?}"),
    }
    // Her bound sessions still serve her.
    let lease = leased(&cp, &pool, &as_user("alice", Some(&a1))).await;
    release(&cp, &pool, &lease.id).await;
    // bob is not affected.
    open_session(&cp, &pool, "bob", "b1").await;
    // One of hers ends: she may open another.
    assert!(cp.unbind(&pool, &a1).await.expect("unbind").changed);
    let resv = reserved(&cp, &pool, &as_user("alice", Some(&third))).await;
    commit_lease(&cp, &pool, &resv, "a3").await;
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!(stats.bindings, 3, "{stats:?}");
}

/// alice may hold one lease at a time: a second is refused at once (not queued), bob is served,
/// and her release frees her quota — also when the lease is held through another node.
async fn inflight_quota_counts_leases_across_nodes(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    let fairness = Fairness {
        inflight_per_user: 1,
        ..Default::default()
    };
    nodes[0]
        .sync(&pool, &fair(Isolation::Shared, 4, fairness))
        .await
        .expect("sync");
    let resv = reserved(&nodes[0], &pool, &as_user("alice", None)).await;
    let held = commit_lease(&nodes[0], &pool, &resv, "s0").await;
    match nodes[1].try_acquire(&pool, &as_user("alice", None)).await {
        Err(ControlError::OverQuota {
            quota: QuotaKind::Inflight,
            limit: 1,
        }) => {}
        other => panic!("alice's second request: expected the in-flight quota, got {other:?}"),
    }
    match nodes[1].try_acquire(&pool, &as_user("bob", None)).await {
        Ok(Attempt::Create(_) | Attempt::Leased(_)) => {}
        other => panic!("bob: expected to be served, got {other:?}"),
    }
    release(&nodes[0], &pool, &held.id).await;
    match nodes[1].try_acquire(&pool, &as_user("alice", None)).await {
        Ok(Attempt::Create(_) | Attempt::Leased(_)) => {}
        other => panic!("alice after her release: expected to be served, got {other:?}"),
    }
}

/// A session bound at `initialize` and never used again ends after the unused TTL (its slot is
/// retired and closed); a session used once more lives by the idle TTL.
async fn unused_sessions_end_after_the_short_ttl(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    let fairness = Fairness {
        unused_ttl_ms: 300,
        ..Default::default()
    };
    cp.sync(&pool, &fair(Isolation::Session, 10, fairness))
        .await
        .expect("sync");
    open_session(&cp, &pool, "alice", "unused").await;
    let used = open_session(&cp, &pool, "alice", "used").await;
    let lease = leased(&cp, &pool, &as_user("alice", Some(&used))).await;
    release(&cp, &pool, &lease.id).await;
    // Control-plane time decides; wait past the unused TTL (the event is an expiry, so time it is).
    tokio::time::sleep(Duration::from_millis(450)).await;
    let reclaimed = cp.reclaim(&pool, 100).await.expect("reclaim");
    let gone: Vec<&str> = reclaimed.closed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(gone, vec!["unused"], "{reclaimed:?}");
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!((stats.bindings, stats.slots), (1, 1), "{stats:?}");
    let lease = leased(&cp, &pool, &as_user("alice", Some(&used))).await;
    release(&cp, &pool, &lease.id).await;
}

/// Rate 10/s with a burst of 3, through two nodes: alice's fourth request at once is refused with
/// the time until the next is admitted; bob's are not; re-tries after a wait are not charged.
async fn rate_limit_is_fleet_wide_per_user(backend: Backend) {
    let plane = Plane::new(backend);
    let nodes = plane.nodes(2).await;
    let pool = pool_id();
    let fairness = Fairness {
        rate_per_user: 10,
        rate_burst: 3,
        ..Default::default()
    };
    nodes[0]
        .sync(&pool, &fair(Isolation::Shared, 8, fairness))
        .await
        .expect("sync");
    let mut admitted = 0;
    let mut refused = None;
    for i in 0..8 {
        match nodes[i % 2].try_acquire(&pool, &as_user("alice", None)).await {
            Ok(Attempt::Create(resv)) => {
                let lease = commit_lease(&nodes[0], &pool, &resv, &format!("s{i}")).await;
                release(&nodes[0], &pool, &lease.id).await;
                admitted += 1;
            }
            Ok(Attempt::Leased(lease)) => {
                release(&nodes[0], &pool, &lease.id).await;
                admitted += 1;
            }
            Err(ControlError::RateLimited {
                retry_after_ms,
                rate,
                burst,
            }) => {
                assert_eq!((rate, burst), (10, 3));
                refused.get_or_insert(retry_after_ms);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // 8 requests within far less than a second: the burst of 3, and at most one more if 100 ms
    // passed meanwhile on a slow machine.
    assert!((3..=4).contains(&admitted), "admitted {admitted}");
    let retry = refused.expect("some of alice's requests were refused");
    assert!((1..=100).contains(&retry), "retry after {retry} ms");
    for _ in 0..3 {
        let lease = match nodes[1].try_acquire(&pool, &as_user("bob", None)).await {
            Ok(Attempt::Leased(lease)) => lease,
            other => panic!("bob: expected a lease, got {other:?}"),
        };
        release(&nodes[1], &pool, &lease.id).await;
    }
    // A re-try (not the first attempt) is not charged.
    let retry_req = AcquireRequest {
        first: false,
        ..as_user("alice", None)
    };
    let lease = leased(&nodes[0], &pool, &retry_req).await;
    release(&nodes[0], &pool, &lease.id).await;
}

/// Anonymous callers (no user) are never counted: no quota, no rate limit.
async fn anonymous_callers_are_not_limited(backend: Backend) {
    let plane = Plane::new(backend);
    let cp = plane.node().await;
    let pool = pool_id();
    let fairness = Fairness {
        sessions_per_user: 1,
        inflight_per_user: 1,
        rate_per_user: 1,
        rate_burst: 1,
        unused_ttl_ms: 0,
    };
    cp.sync(&pool, &fair(Isolation::Shared, 3, fairness))
        .await
        .expect("sync");
    let mut held = Vec::new();
    for i in 0..3 {
        let req = AcquireRequest::new("node-a", None);
        let resv = reserved(&cp, &pool, &req).await;
        held.push(commit_lease(&cp, &pool, &resv, &format!("s{i}")).await);
    }
    for lease in held {
        release(&cp, &pool, &lease.id).await;
    }
}

crate::on_every_backend!(
    session_quota_refuses_only_the_user_at_it,
    inflight_quota_counts_leases_across_nodes,
    unused_sessions_end_after_the_short_ttl,
    rate_limit_is_fleet_wide_per_user,
    anonymous_callers_are_not_limited,
);
