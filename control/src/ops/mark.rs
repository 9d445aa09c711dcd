//! `mark`: a slot becomes ready, draining, unhealthy or retired; idle leavers are deleted at once.
//!
//! Script: `lua/mark.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/mark.lua")));

fn state_name(state: SlotState) -> &'static str {
    match state {
        SlotState::Ready => "ready",
        SlotState::Draining => "draining",
        SlotState::Unhealthy => "unhealthy",
        SlotState::Retired | SlotState::Closed => "retired",
    }
}

impl RedisControlPlane {
    pub async fn mark(&self, pool: &ServerId, slot: &str, state: SlotState) -> Result<Changed, ControlError> {
        changed(
            self.eval_pool(&SCRIPT, pool, vec![Value::from(slot), Value::from(state_name(state))])
                .await?,
        )
    }

    pub async fn mark_idle_fenced(
        &self,
        pool: &ServerId,
        slot: &str,
        state: SlotState,
        token: u64,
    ) -> Result<Changed, ControlError> {
        let args = vec![
            Value::from(slot),
            Value::from(state_name(state)),
            Value::from(token as i64),
            Value::from("idle"),
        ];
        let reply = self.eval_pool(&SCRIPT, pool, args).await?;
        if reply.first().and_then(int) == Some(-1) {
            let newest = reply.get(1).and_then(int).unwrap_or(0).max(0) as u64;
            return Err(ControlError::StaleFence { newest });
        }
        changed(reply)
    }
}

impl EmbeddedControlPlane {
    pub async fn mark_idle_fenced(
        &self,
        pool: &ServerId,
        slot: &str,
        state: SlotState,
        token: u64,
    ) -> Result<Changed, ControlError> {
        // One critical section, as the script is atomic: the slot cannot be leased or bound
        // between the check and the mark.
        self.with_pool(pool, |p| {
            p.check_fence(token)
                .map_err(|newest| ControlError::StaleFence { newest })?;
            let Some(c) = p.cfg.clone() else {
                return Ok(Changed::default());
            };
            let Some(mut s) = p
                .slots
                .get(slot)
                .filter(|s| s.state == SlotState::Ready && s.leases == 0 && s.bindings == 0)
                .cloned()
            else {
                return Ok(Changed::default());
            };
            s.state = state;
            let mut closed = Vec::new();
            p.settle(&c, s, &mut closed);
            p.publish();
            Ok(Changed { changed: true, closed })
        })?
    }

    pub async fn mark(&self, pool: &ServerId, slot: &str, state: SlotState) -> Result<Changed, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else {
                return Changed::default();
            };
            let Some(mut s) = p.slots.get(slot).cloned() else {
                return Changed::default();
            };
            s.state = if state == SlotState::Closed {
                SlotState::Retired
            } else {
                state
            };
            let mut closed = Vec::new();
            p.settle(&c, s, &mut closed);
            p.publish();
            Changed { changed: true, closed }
        })
    }
}
