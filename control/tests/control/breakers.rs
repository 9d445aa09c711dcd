//! Endpoint circuit breakers, the same on every backend: failures in a row open an endpoint
//! (new slots go to the others; with every endpoint open an acquire that needs a slot fails fast),
//! after the open period one creation probes it (half-open), and a commit there or an answered
//! probe closes it.

use std::time::Duration;

use poolgate_control::{AcquireRequest, Attempt, Breaker, BreakerState, ControlError, EndpointOutcome, PoolSpec};
use poolgate_shared::domain::pool::Strategy;

use crate::harness::{commit_lease, pool_id, reserved, spec, Backend, Plane};

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

crate::on_every_backend!(breakers_open_route_around_and_close, a_zero_threshold_never_opens);
