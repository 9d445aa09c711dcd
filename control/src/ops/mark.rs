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

impl RedisControlPlane {
    pub async fn mark(&self, pool: &ServerId, slot: &str, state: SlotState) -> Result<Changed, ControlError> {
        let name = match state {
            SlotState::Ready => "ready",
            SlotState::Draining => "draining",
            SlotState::Unhealthy => "unhealthy",
            SlotState::Retired | SlotState::Closed => "retired",
        };
        changed(
            self.eval_pool(&SCRIPT, pool, vec![Value::from(slot), Value::from(name)])
                .await?,
        )
    }
}

impl EmbeddedControlPlane {
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
