//! `renew`: a live lease's expiry moves to now + lease TTL (control-plane time, I5); an expired one
//! stays dead.
//!
//! Script: `lua/renew.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/renew.lua")));

impl RedisControlPlane {
    pub async fn renew(&self, pool: &ServerId, lease: &str) -> Result<Option<i64>, ControlError> {
        let reply = self.eval_pool(&SCRIPT, pool, vec![Value::from(lease)]).await?;
        Ok(match reply.first().and_then(int) {
            Some(1) => reply.get(1).and_then(int),
            _ => None,
        })
    }
}

impl EmbeddedControlPlane {
    pub async fn renew(&self, pool: &ServerId, lease: &str) -> Result<Option<i64>, ControlError> {
        self.with_pool(pool, |p| {
            let c = p.cfg.clone()?;
            let now = now_ms();
            // An expired lease stays dead even before a reclaim pass removes it.
            if p.leases.score(lease)? <= now as f64 {
                return None;
            }
            let expires = now + c.lease_ttl;
            p.leases.add(lease, expires as f64);
            Some(expires)
        })
    }
}
