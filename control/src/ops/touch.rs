//! `touch`: a binding's idle expiry moves to now + idle TTL.
//!
//! Script: `lua/touch.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/touch.lua")));

impl RedisControlPlane {
    pub async fn touch(&self, pool: &ServerId, key: &str) -> Result<bool, ControlError> {
        let reply = self.eval_pool(&SCRIPT, pool, vec![Value::from(key)]).await?;
        Ok(reply.first().and_then(int) == Some(1))
    }
}

impl EmbeddedControlPlane {
    pub async fn touch(&self, pool: &ServerId, key: &str) -> Result<bool, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else { return false };
            if !p.bind.contains_key(key) {
                return false;
            }
            p.bexp.add(key, (now_ms() + c.idle_ttl) as f64);
            true
        })
    }
}
