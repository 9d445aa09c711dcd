//! `reclaim`: expired leases, idle bindings and dead reservations are reclaimed (I4), and the
//! outbox of removed slots drained.
//!
//! Script: `lua/reclaim.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/reclaim.lua")));

impl RedisControlPlane {
    pub async fn reclaim(&self, pool: &ServerId, limit: u32) -> Result<Reclaimed, ControlError> {
        let reply = self
            .eval_pool(&SCRIPT, pool, vec![Value::from(i64::from(limit))])
            .await?;
        let count = |i: usize| reply.get(i).and_then(int).unwrap_or(0) as u32;
        let closed = reply.iter().skip(3).map(record).collect::<Result<Vec<_>, _>>()?;
        Ok(Reclaimed {
            leases: count(0),
            bindings: count(1),
            reservations: count(2),
            closed,
        })
    }
}

impl EmbeddedControlPlane {
    pub async fn reclaim(&self, pool: &ServerId, limit: u32) -> Result<Reclaimed, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else {
                return Reclaimed::default();
            };
            let mut closed = Vec::new();
            let (leases, bindings, reservations) = p.reclaim(&c, now_ms(), limit as usize, &mut closed);
            let pending = p.closing.len().min(limit as usize);
            closed.extend(p.closing.drain(..pending));
            Reclaimed {
                leases,
                bindings,
                reservations,
                closed,
            }
        })
    }
}
