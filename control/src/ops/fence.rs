//! `fence`: a leader's token is recorded on a pool; older tokens are refused from then on (I6).
//!
//! Script: `lua/fence.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/fence.lua")));

impl RedisControlPlane {
    pub async fn fence(&self, pool: &ServerId, token: u64) -> Result<(), ControlError> {
        let reply = self
            .eval_pool(&SCRIPT, pool, vec![Value::from(token.to_string())])
            .await?;
        match reply.first().and_then(int) {
            Some(1) => Ok(()),
            _ => Err(stale_fence(&reply)),
        }
    }
}

impl EmbeddedControlPlane {
    pub async fn fence(&self, pool: &ServerId, token: u64) -> Result<(), ControlError> {
        self.with_pool(pool, |p| p.check_fence(token))?
            .map_err(|newest| ControlError::StaleFence { newest })
    }
}
