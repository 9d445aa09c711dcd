//! `sync`: the pool's configuration from the store; the selection sets are rebuilt when strategy,
//! isolation, capacity or weights change.
//!
//! Script: `lua/sync.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::interfaces::SetsInterface as _;
use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::keys::registry_key;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/sync.lua")));

impl RedisControlPlane {
    pub async fn sync(&self, pool: &ServerId, spec: &PoolSpec) -> Result<u64, ControlError> {
        let args: Vec<Value> = spec
            .fields()
            .into_iter()
            .flat_map(|(k, v)| [Value::from(k), Value::from(v)])
            .collect();
        let gen = self.eval(&SCRIPT, self.keys(pool).keys, args).await?;
        let registry = registry_key(&self.prefix);
        self.bounded(self.client.sadd::<i64, _, _>(registry, pool.as_str()))
            .await?;
        int(&gen).map(|g| g as u64).ok_or_else(|| protocol("sync", &gen))
    }
}

impl EmbeddedControlPlane {
    pub async fn sync(&self, pool: &ServerId, spec: &PoolSpec) -> Result<u64, ControlError> {
        self.with_pool(pool, |p| p.sync(spec))
    }
}

impl Pool {
    /// `sync.lua`.
    fn sync(&mut self, spec: &PoolSpec) -> u64 {
        let old = self.cfg.take();
        let c = Cfg::from_spec(spec);
        self.gen += 1;
        let rebuild = old
            .as_ref()
            .is_none_or(|o| o.strategy != c.strategy || o.iso != c.iso || o.cap != c.cap || o.weights != c.weights);
        self.cfg = Some(c.clone());
        if rebuild {
            self.avail.clear();
            self.bload.clear();
            let ids: Vec<String> = self.slots.keys().cloned().collect();
            for id in ids {
                if let Some(mut s) = self.slots.get(&id).cloned() {
                    s.weight = c.weight(s.endpoint);
                    self.slots.insert(id, s.clone());
                    self.refresh(&c, &s);
                }
            }
            self.publish();
        }
        self.gen
    }
}
