//! Leader election and fencing (I6): one leader at a time, a strictly greater term for each new
//! one, and a deposed leader's fenced writes refused.

use std::time::Duration;

use poolgate_control::{AcquireRequest, Campaign, ControlError, ControlPlane, SlotState};
use poolgate_shared::domain::pool::Strategy;
use poolgate_shared::domain::server::ServerId;

use crate::harness::{leased, pool_id, spec, warm, Backend, Plane};

const LONG: Duration = Duration::from_secs(10);

async fn won(cp: &ControlPlane, holder: &str, ttl: Duration) -> u64 {
    match cp.campaign(holder, ttl).await.expect("campaign") {
        Campaign::Won { term } => term,
        other => panic!("{holder} expected to win, got {other:?}"),
    }
}

async fn held_by(cp: &ControlPlane, holder: &str, ttl: Duration) -> String {
    match cp.campaign(holder, ttl).await.expect("campaign") {
        Campaign::Held { by } => by,
        other => panic!("{holder} expected to lose, got {other:?}"),
    }
}

/// A pool with two idle slots and one leased one, for recycle to act on.
async fn recyclable_pool(cp: &ControlPlane) -> ServerId {
    let pool = pool_id();
    cp.sync(&pool, &spec(Strategy::RoundRobin, 3)).await.expect("sync");
    warm(cp, &pool, 3, "r").await;
    leased(cp, &pool, &AcquireRequest::new("n", None)).await;
    pool
}

/// After the new leader fenced the pool with `new_term`, the old leader's writes there are
/// refused and change nothing; the new leader's succeed.
async fn old_leader_is_fenced(old: &ControlPlane, new: &ControlPlane, pool: &ServerId, old_term: u64, new_term: u64) {
    new.fence(pool, new_term).await.expect("the new leader fences the pool");
    assert_eq!(new.stats(pool).await.expect("stats").fence, new_term);
    let before = old.slots(pool).await.expect("slots");
    let refused = old.recycle(pool, old_term, Duration::ZERO, 10).await;
    assert!(
        matches!(refused, Err(ControlError::StaleFence { newest }) if newest == new_term),
        "{refused:?}"
    );
    let refused = old.fence(pool, old_term).await;
    assert!(
        matches!(refused, Err(ControlError::StaleFence { newest }) if newest == new_term),
        "{refused:?}"
    );
    assert_eq!(
        old.slots(pool).await.expect("slots"),
        before,
        "a refused write changed the pool"
    );
    assert_eq!(old.stats(pool).await.expect("stats").fence, new_term);

    let closed = new.recycle(pool, new_term, Duration::ZERO, 10).await.expect("recycle");
    let mut ids: Vec<_> = closed.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids.len(),
        2,
        "the two idle slots are recycled, the leased one kept: {closed:?}"
    );
    let left = new.slots(pool).await.expect("slots");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].leases, 1);
}

/// One leader at a time; it renews; after it resigns another wins with a greater term, and the
/// old leader's fenced writes are refused.
async fn leadership_moves_on_resign(backend: Backend) {
    let plane = Plane::new(backend);
    let a = plane.node().await;
    let b = plane.node().await;
    let pool = recyclable_pool(&a).await;

    let t1 = won(&a, "coord-a", LONG).await;
    assert!(t1 >= 1);
    assert_eq!(held_by(&b, "coord-b", LONG).await, format!("coord-a|{t1}"));
    assert_eq!(won(&a, "coord-a", LONG).await, t1, "a re-sent campaign keeps the term");
    assert!(a.renew_leadership("coord-a", t1, LONG).await.expect("renew"));
    assert!(!b.renew_leadership("coord-b", t1, LONG).await.expect("renew"));
    assert!(!b.resign("coord-b", t1).await.expect("resign"), "b does not lead");
    assert!(
        !a.renew_leadership("coord-a", t1 + 1, LONG).await.expect("renew"),
        "wrong term"
    );
    a.fence(&pool, t1).await.expect("fence");

    assert!(a.resign("coord-a", t1).await.expect("resign"));
    assert!(!a.resign("coord-a", t1).await.expect("resign again"));
    assert!(!a.renew_leadership("coord-a", t1, LONG).await.expect("renew"));
    let t2 = won(&b, "coord-b", LONG).await;
    assert!(t2 > t1, "terms only grow: {t1} then {t2}");
    assert_eq!(held_by(&a, "coord-a", LONG).await, format!("coord-b|{t2}"));
    old_leader_is_fenced(&a, &b, &pool, t1, t2).await;
}

/// A leader that stops renewing loses the lead when its TTL (kept by the control plane) runs out;
/// renewing in time keeps it.
async fn leadership_expires_without_renewal(backend: Backend) {
    let plane = Plane::new(backend);
    let a = plane.node().await;
    let b = plane.node().await;
    let pool = recyclable_pool(&b).await;
    let ttl = Duration::from_millis(400);

    let t1 = won(&a, "coord-a", ttl).await;
    held_by(&b, "coord-b", ttl).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        a.renew_leadership("coord-a", t1, ttl).await.expect("renew"),
        "renewed in time"
    );
    // ~500 ms: past the first TTL, within the renewed one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        held_by(&b, "coord-b", ttl).await,
        format!("coord-a|{t1}"),
        "the renewal kept the lead"
    );
    // ~700 ms: the renewed TTL ran out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t2 = won(&b, "coord-b", LONG).await;
    assert!(t2 > t1, "terms only grow: {t1} then {t2}");
    assert!(
        !a.renew_leadership("coord-a", t1, ttl).await.expect("renew"),
        "a lost the lead"
    );
    assert!(!a.resign("coord-a", t1).await.expect("resign"));
    assert_eq!(held_by(&a, "coord-a", ttl).await, format!("coord-b|{t2}"));
    old_leader_is_fenced(&a, &b, &pool, t1, t2).await;
}

/// The leader's health-check mark: refused for an older token; acts only on a slot still idle
/// (a slot leased or bound since the leader listed it is left alone); marks an idle one.
async fn a_fenced_mark_only_takes_a_slot_still_idle(backend: Backend) {
    let cp = Plane::new(backend).node().await;
    let pool = pool_id();
    cp.sync(&pool, &spec(Strategy::LeastConnections, 2))
        .await
        .expect("sync");
    let slots = warm(&cp, &pool, 2, "s").await;
    let (busy, idle) = (&slots[0].id, &slots[1].id);
    cp.fence(&pool, 5).await.expect("fence");
    match cp.mark_idle_fenced(&pool, idle, SlotState::Unhealthy, 4).await {
        Err(ControlError::StaleFence { newest: 5 }) => {}
        other => panic!("an older leader's mark must be refused, got {other:?}"),
    }
    let lease = leased(&cp, &pool, &AcquireRequest::new("node", None)).await;
    assert_eq!(&lease.slot.id, busy, "least connections takes the first idle slot");
    let raced = cp
        .mark_idle_fenced(&pool, busy, SlotState::Unhealthy, 5)
        .await
        .expect("mark");
    assert!(!raced.changed, "a slot leased since it was listed is left alone");
    let marked = cp
        .mark_idle_fenced(&pool, idle, SlotState::Unhealthy, 5)
        .await
        .expect("mark");
    assert!(marked.changed);
    assert_eq!(marked.closed.len(), 1, "an idle unhealthy slot leaves at once");
    let left: Vec<String> = cp
        .slots(&pool)
        .await
        .expect("slots")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(&left, std::slice::from_ref(busy));
}

crate::on_every_backend!(
    leadership_moves_on_resign,
    leadership_expires_without_renewal,
    a_fenced_mark_only_takes_a_slot_still_idle
);
