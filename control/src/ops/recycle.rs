//! `recycle` (leader only, fenced): idle slots older than the recycle age are retired.
//!
//! Script: `lua/recycle.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/recycle.lua")));

impl RedisControlPlane {
    pub async fn recycle(
        &self,
        pool: &ServerId,
        token: u64,
        max_age: Duration,
        limit: u32,
    ) -> Result<Vec<SlotRecord>, ControlError> {
        let args = vec![
            Value::from(token.to_string()),
            Value::from(max_age.as_millis() as i64),
            Value::from(i64::from(limit)),
        ];
        let reply = self.eval_pool(&SCRIPT, pool, args).await?;
        match tag(&reply).as_deref() {
            Some("OK") => reply.iter().skip(1).map(record).collect(),
            Some("F") => Err(stale_fence(&reply)),
            _ => Err(unexpected("recycle", &reply)),
        }
    }
}

impl EmbeddedControlPlane {
    pub async fn recycle(
        &self,
        pool: &ServerId,
        token: u64,
        max_age: Duration,
        limit: u32,
    ) -> Result<Vec<SlotRecord>, ControlError> {
        self.with_pool(pool, |p| {
            p.check_fence(token)
                .map_err(|newest| ControlError::StaleFence { newest })?;
            let Some(c) = p.cfg.clone() else { return Ok(vec![]) };
            let cutoff = now_ms() - max_age.as_millis() as i64;
            let mut closed = Vec::new();
            for id in p.all.up_to(cutoff as f64, limit as usize) {
                if let Some(mut s) = p.slots.get(&id).cloned() {
                    if s.leases == 0 && s.bindings == 0 {
                        s.state = SlotState::Retired;
                        p.settle(&c, s, &mut closed);
                    }
                }
            }
            Ok(closed)
        })?
    }
}
