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
    pub async fn sync(&self, pool: &ServerId, spec: &PoolSpec) -> Result<Synced, ControlError> {
        let args: Vec<Value> = spec
            .sync_args()
            .into_iter()
            .flat_map(|(k, v)| [Value::from(k), Value::from(v)])
            .collect();
        let reply = self.eval(&SCRIPT, self.keys(pool).keys, args).await?;
        let items = items(reply.clone());
        let (Some(generation), Some(changed)) = (items.first().and_then(int), items.get(1).and_then(int)) else {
            return Err(protocol("sync", &reply));
        };
        if changed == 1 {
            let registry = registry_key(&self.prefix);
            self.bounded(self.client().sadd::<i64, _, _>(registry, pool.as_str()))
                .await?;
        }
        Ok(Synced {
            generation: generation.max(0) as u64,
            changed: changed == 1,
        })
    }
}

impl EmbeddedControlPlane {
    pub async fn sync(&self, pool: &ServerId, spec: &PoolSpec) -> Result<Synced, ControlError> {
        self.with_pool(pool, |p| p.sync(spec))
    }
}

impl Pool {
    /// `sync.lua`'s lowered max (I1): the slots beyond it retire, oldest first — idle ones, then
    /// busy ones, then bound ones (their bindings end).
    fn trim_to_max(&mut self, c: &Cfg, closed: &mut Vec<SlotRecord>) {
        let live: Vec<SlotRecord> = self
            .all
            .up_to(f64::INFINITY, usize::MAX)
            .iter()
            .filter_map(|id| self.slots.get(id).cloned())
            .filter(|s| s.state != SlotState::Retired)
            .collect();
        let mut excess = live.len() as i64 - i64::from(c.max);
        if excess <= 0 {
            return;
        }
        let tier = |s: &SlotRecord| {
            if s.bindings > 0 {
                3
            } else if s.leases > 0 {
                2
            } else {
                1
            }
        };
        for t in 1..=3 {
            for s in live.iter().filter(|s| tier(s) == t) {
                if excess <= 0 {
                    return;
                }
                if s.bindings > 0 {
                    let keys: Vec<String> = self
                        .bind
                        .iter()
                        .filter(|(_, slot)| **slot == s.id)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in keys {
                        self.unbind_key(c, &k, closed);
                    }
                }
                if let Some(mut s) = self.slots.get(&s.id).cloned() {
                    s.state = SlotState::Retired;
                    self.settle(c, s, closed);
                }
                excess -= 1;
            }
        }
    }

    /// `sync.lua`.
    fn sync(&mut self, spec: &PoolSpec) -> Synced {
        let digest = spec.digest();
        if self.digest.as_deref() == Some(digest.as_str()) {
            return Synced {
                generation: self.gen,
                changed: false,
            };
        }
        self.digest = Some(digest);
        let old = self.cfg.take();
        let c = Cfg::from_spec(spec);
        self.gen += 1;
        let mut closed = Vec::new();
        if let (true, Some(new)) = (old.is_some(), &spec.identity) {
            let before = self.identity.clone();
            let reborn = before
                .as_ref()
                .is_some_and(|b| b.incarnation != new.incarnation || b.headers != new.headers);
            let moved = before.as_ref().is_some_and(|b| b.endpoints != new.endpoints);
            let disabling = !new.enabled && before.as_ref().is_none_or(|b| b.enabled);
            if reborn || moved || disabling {
                // Creations in flight were started for what the pool was.
                for id in self.resv.up_to(f64::INFINITY, usize::MAX) {
                    self.abort_resv(&id);
                }
            }
            if moved {
                // Breakers belong to endpoint indexes, which no longer mean the same URLs.
                self.breakers.clear();
            }
            let mut leaving = std::collections::HashSet::new();
            let ids: Vec<String> = self.slots.keys().cloned().collect();
            for id in ids {
                let Some(mut s) = self.slots.get(&id).cloned() else {
                    continue;
                };
                let at = s
                    .meta
                    .endpoint
                    .as_ref()
                    .map(|url| new.endpoints.iter().position(|e| e == url).map(|i| i as u32));
                match at {
                    _ if reborn => {
                        leaving.insert(id);
                    }
                    Some(None) => {
                        leaving.insert(id);
                    }
                    Some(Some(i)) if i != s.endpoint => {
                        *self.per_endpoint.entry(s.endpoint).or_default() -= 1;
                        *self.per_endpoint.entry(i).or_default() += 1;
                        s.endpoint = i;
                        s.weight = c.weight(i);
                        self.slots.insert(id, s);
                    }
                    _ => {}
                }
            }
            if !leaving.is_empty() {
                let keys: Vec<String> = self
                    .bind
                    .iter()
                    .filter(|(_, slot)| leaving.contains(*slot))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    self.unbind_key(&c, &k, &mut closed);
                }
                for id in leaving {
                    if let Some(mut s) = self.slots.get(&id).cloned() {
                        s.state = SlotState::Retired;
                        self.settle(&c, s, &mut closed);
                    }
                }
            }
        }
        if let Some(new) = &spec.identity {
            let was_enabled = self.identity.as_ref().is_none_or(|b| b.enabled);
            if !new.enabled && was_enabled {
                let ids: Vec<String> = self.slots.keys().cloned().collect();
                for id in ids {
                    if let Some(mut s) = self.slots.get(&id).cloned().filter(|s| s.state == SlotState::Ready) {
                        s.state = SlotState::Draining;
                        self.settle(&c, s, &mut closed);
                    }
                }
            }
            self.identity = Some(new.clone());
        }
        if old.is_some() {
            self.trim_to_max(&c, &mut closed);
        }
        self.push_outbox(closed);
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
        }
        self.publish();
        Synced {
            generation: self.gen,
            changed: true,
        }
    }
}
