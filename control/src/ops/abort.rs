//! `abort`: a reservation whose upstream session could not be created frees its capacity.
//!
//! Script: `lua/abort.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/abort.lua")));

impl RedisControlPlane {
    pub async fn abort(&self, pool: &ServerId, reservation: &str) -> Result<bool, ControlError> {
        let reply = self.eval_pool(&SCRIPT, pool, vec![Value::from(reservation)]).await?;
        Ok(reply.first().and_then(int) == Some(1))
    }
}

impl EmbeddedControlPlane {
    pub async fn abort(&self, pool: &ServerId, reservation: &str) -> Result<bool, ControlError> {
        self.with_pool(pool, |p| p.abort_resv(reservation))
    }
}
