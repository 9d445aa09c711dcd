//! `breaker`: an outcome at an endpoint feeds its fleet-wide circuit breaker. Consecutive failures
//! open it (new slots go to the server's other endpoints; with every endpoint open, acquires that
//! need a slot fail fast with [`ControlError::CircuitOpen`]); after the open period one creation
//! there is a probe (half-open); a created slot (`commit`) or an answered probe closes it.
//! Failed creations also count in `cfr`, which pool health reads.
//!
//! Script: `lua/breaker.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::now_ms;
use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/breaker.lua")));

fn outcome_name(o: EndpointOutcome) -> &'static str {
    match o {
        EndpointOutcome::Ok => "ok",
        EndpointOutcome::CreateFailed => "create",
        EndpointOutcome::Failed => "fail",
    }
}

impl RedisControlPlane {
    pub async fn breaker(
        &self,
        pool: &ServerId,
        ep: u32,
        outcome: EndpointOutcome,
        breaker: Breaker,
    ) -> Result<BreakerState, ControlError> {
        let args = vec![
            Value::from(i64::from(ep)),
            Value::from(outcome_name(outcome)),
            Value::from(i64::from(breaker.threshold)),
            Value::from(breaker.open.as_millis() as i64),
        ];
        let reply = self.eval_pool(&SCRIPT, pool, args).await?;
        Ok(match reply.first().and_then(int) {
            Some(1) => BreakerState::Open,
            Some(2) => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        })
    }
}

impl EmbeddedControlPlane {
    pub async fn breaker(
        &self,
        pool: &ServerId,
        ep: u32,
        outcome: EndpointOutcome,
        breaker: Breaker,
    ) -> Result<BreakerState, ControlError> {
        self.with_pool(pool, |p| p.breaker(ep, outcome, breaker, now_ms()))
    }
}
