//! `forget`: a deleted server's pool leaves the control plane once it is empty — its keys are
//! deleted and it leaves the registry, so a server re-created under the same id starts from
//! nothing.
//!
//! Script: `lua/forget.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::interfaces::SetsInterface as _;
use fred::types::scripts::Script;

use crate::embedded::EmbeddedControlPlane;
use crate::keys::registry_key;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/forget.lua")));

impl RedisControlPlane {
    pub async fn forget(&self, pool: &ServerId) -> Result<bool, ControlError> {
        let reply = self.eval(&SCRIPT, self.keys(pool).keys, vec![]).await?;
        if int(&reply) != Some(1) {
            return Ok(false);
        }
        let registry = registry_key(&self.prefix);
        self.bounded(self.client().srem::<i64, _, _>(registry, pool.as_str()))
            .await?;
        Ok(true)
    }
}

impl EmbeddedControlPlane {
    pub async fn forget(&self, pool: &ServerId) -> Result<bool, ControlError> {
        self.forget_pool(pool)
    }
}
