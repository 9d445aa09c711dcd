//! `unbind`: a binding ends; in session isolation its slot is retired (I8) and, idle, removed.
//!
//! Script: `lua/unbind.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/unbind.lua")));

impl RedisControlPlane {
    pub async fn unbind(&self, pool: &ServerId, key: &str) -> Result<Changed, ControlError> {
        changed(self.eval_pool(&SCRIPT, pool, vec![Value::from(key)]).await?)
    }
}

impl EmbeddedControlPlane {
    pub async fn unbind(&self, pool: &ServerId, key: &str) -> Result<Changed, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else {
                return Changed::default();
            };
            let mut closed = Vec::new();
            let changed = p.unbind_key(&c, key, &mut closed);
            Changed { changed, closed }
        })
    }
}
