//! Endpoint circuit breakers, the same on every backend: failures in a row open an endpoint
//! (new slots go to the others; with every endpoint open an acquire that needs a slot fails fast),
//! after the open period one creation probes it (half-open), and a commit there or an answered
//! probe closes it.

use std::time::Duration;

use poolgate_control::{
    AcquireRequest, Attempt, Breaker, BreakerState, ControlError, EndpointOutcome, Outcome, PoolIdentity, PoolSpec,
};
use poolgate_shared::domain::pool::Strategy;

use crate::harness::{commit_lease, meta, pool_id, reserved, spec, Backend, Plane};

const BREAKER: Breaker = Breaker {
    threshold: 2,
    open: Duration::from_millis(400),
};

fn two_endpoints() -> PoolSpec {
    PoolSpec {
        endpoint_weights: vec![1, 1],
        ..spec(Strategy::LeastConnections, 10)
    }
}

async fn breakers_open_route_around_and_close(backend: Backend) {
    let cp = Plane::new(backend).node().await;
    let pool = pool_id();
    cp.sync(&pool, &two_endpoints()).await.expect("sync");
    // Endpoint 0 fails its creations: below the threshold it stays closed and is still picked.
    for n in 1..=2u64 {
        let resv = reserved(&cp, &pool, &AcquireRequest::new("node", None)).await;
        assert_eq!(resv.endpoint, 0, "the least-loaded endpoint is tried");
        assert!(cp.abort(&pool, &resv.id).await.expect("abort"));
        let state = cp
            .breaker(&pool, 0, EndpointOutcome::CreateFailed, BREAKER)
            .await
            .expect("breaker");
        assert_eq!(
            state,
            if n < 2 {
                BreakerState::Closed
            } else {
                BreakerState::Open
            }
        );
    }
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!(stats.breaker_state(0), BreakerState::Open);
    assert_eq!(stats.breaker_state(1), BreakerState::Closed);
    assert_eq!(stats.create_failures, 2);
    // Open: new slots go to endpoint 1 only.
    for i in 0..3 {
        let resv = reserved(&cp, &pool, &AcquireRequest::new("node", None)).await;
        assert_eq!(resv.endpoint, 1, "an open endpoint gets no new slot");
        commit_lease(&cp, &pool, &resv, &format!("s{i}")).await;
    }
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!(stats.create_failures, 0, "a created slot resets the creation failures");
    assert_eq!(
        stats.breaker_state(0),
        BreakerState::Open,
        "a commit elsewhere does not close it"
    );
    // Endpoint 1 fails too: every breaker open, an acquire that needs a slot fails fast.
    for _ in 0..2 {
        cp.breaker(&pool, 1, EndpointOutcome::Failed, BREAKER)
            .await
            .expect("breaker");
    }
    match cp.try_acquire(&pool, &AcquireRequest::new("node", None)).await {
        Err(ControlError::CircuitOpen) => {}
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    // Past the open period both are half-open: one creation probes endpoint 0 (least loaded);
    // picking it re-arms it, so the next creation goes to endpoint 1.
    tokio::time::sleep(BREAKER.open + Duration::from_millis(100)).await;
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!(stats.breaker_state(0), BreakerState::HalfOpen);
    let probe = reserved(&cp, &pool, &AcquireRequest::new("node", None)).await;
    assert_eq!(probe.endpoint, 0);
    assert_eq!(
        cp.stats(&pool).await.expect("stats").breaker_state(0),
        BreakerState::Open
    );
    let other = reserved(&cp, &pool, &AcquireRequest::new("node", None)).await;
    assert_eq!(other.endpoint, 1, "one probe at a time");
    // The probe's session was created: endpoint 0 closes. An answered probe closes endpoint 1.
    commit_lease(&cp, &pool, &probe, "probe").await;
    cp.breaker(&pool, 1, EndpointOutcome::Ok, BREAKER)
        .await
        .expect("breaker");
    let stats = cp.stats(&pool).await.expect("stats");
    assert_eq!(
        (stats.breaker_state(0), stats.breaker_state(1)),
        (BreakerState::Closed, BreakerState::Closed),
        "{:?}",
        stats.breakers
    );
    match cp.try_acquire(&pool, &AcquireRequest::new("node", None)).await {
        Ok(Attempt::Leased(_) | Attempt::Create(_)) => {}
        other => panic!("closed breakers serve again, got {other:?}"),
    }
}

/// A threshold of 0 turns breakers off: failures are counted, nothing opens.
async fn a_zero_threshold_never_opens(backend: Backend) {
    let cp = Plane::new(backend).node().await;
    let pool = pool_id();
    cp.sync(&pool, &two_endpoints()).await.expect("sync");
    let off = Breaker {
        threshold: 0,
        ..BREAKER
    };
    for _ in 0..5 {
        let state = cp
            .breaker(&pool, 0, EndpointOutcome::Failed, off)
            .await
            .expect("breaker");
        assert_eq!(state, BreakerState::Closed);
    }
    let resv = reserved(&cp, &pool, &AcquireRequest::new("node", None)).await;
    assert_eq!(resv.endpoint, 0);
}

/// A request that goes well at an endpoint ends its failures in a row: rare errors spread over
/// days never add up to an open breaker.
async fn a_good_request_resets_the_failures(backend: Backend) {
    let cp = Plane::new(backend).node().await;
    let pool = pool_id();
    cp.sync(&pool, &two_endpoints()).await.expect("sync");
    let resv = reserved(&cp, &pool, &AcquireRequest::new("node", None)).await;
    assert_eq!(resv.endpoint, 0);
    let lease = commit_lease(&cp, &pool, &resv, "s0").await;
    cp.breaker(&pool, 0, EndpointOutcome::Failed, BREAKER)
        .await
        .expect("breaker");
    assert_eq!(
        cp.stats(&pool)
            .await
            .expect("stats")
            .breakers
            .get(&0)
            .map(|b| b.failures),
        Some(1)
    );
    let outcome = Outcome {
        latency_ms: Some(5),
        ..Outcome::default()
    };
    assert!(cp.release(&pool, &lease.id, outcome).await.expect("release").changed);
    assert!(
        cp.stats(&pool).await.expect("stats").breakers.is_empty(),
        "the failure count ended"
    );
    cp.breaker(&pool, 0, EndpointOutcome::Failed, BREAKER)
        .await
        .expect("breaker");
    assert_eq!(
        cp.breaker(&pool, 0, EndpointOutcome::Failed, BREAKER)
            .await
            .expect("breaker"),
        BreakerState::Open,
        "two in a row still open it"
    );
}

/// A creation in flight when the pool's endpoints change (or its headers, or it is disabled)
/// finds no reservation at its commit: the node closes the session it opened, and no slot for
/// what the pool was joins it.
async fn a_creation_in_flight_across_an_endpoint_change_is_refused(backend: Backend) {
    let cp = Plane::new(backend).node().await;
    let pool = pool_id();
    let identity = |urls: &[&str]| PoolIdentity {
        enabled: true,
        endpoints: urls.iter().map(|u| (*u).to_owned()).collect(),
        headers: String::new(),
        incarnation: 1,
    };
    let with = |urls: &[&str]| PoolSpec {
        endpoint_weights: vec![1; urls.len()],
        identity: Some(identity(urls)),
        fairness: Default::default(),
        ..spec(Strategy::LeastConnections, 4)
    };
    cp.sync(&pool, &with(&["http://a/mcp"])).await.expect("sync");
    let resv = reserved(&cp, &pool, &AcquireRequest::new("node", None)).await;
    cp.sync(&pool, &with(&["http://b/mcp"])).await.expect("move");
    match cp.commit(&pool, &resv.id, "late", &meta("late")).await {
        Err(ControlError::ReservationGone) => {}
        other => panic!("the reservation for the old endpoint must be gone, got {other:?}"),
    }
    assert!(cp.slots(&pool).await.expect("slots").is_empty());
    assert_eq!(cp.stats(&pool).await.expect("stats").reservations, 0);
}

crate::on_every_backend!(
    breakers_open_route_around_and_close,
    a_zero_threshold_never_opens,
    a_good_request_resets_the_failures,
    a_creation_in_flight_across_an_endpoint_change_is_refused
);
