//! `stats` (read-only figures), the slot list, and the two counters nodes and the leader record
//! outside scripts (`hping`/`hfail`, `tmo`).
//!
//! Script: `lua/stats.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::interfaces::HashesInterface as _;
use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::keys::PoolKey;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/stats.lua")));

impl RedisControlPlane {
    pub async fn stats(&self, pool: &ServerId) -> Result<PoolStats, ControlError> {
        let reply = self.eval_pool(&SCRIPT, pool, vec![]).await?;
        let pairs: Vec<(String, u64)> = reply
            .chunks(2)
            .filter_map(|kv| Some((text(kv.first()?)?, int(kv.get(1)?)?.max(0) as u64)))
            .collect();
        Ok(PoolStats::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), *v))))
    }

    pub async fn slots(&self, pool: &ServerId) -> Result<Vec<SlotRecord>, ControlError> {
        let key = self.keys(pool).get(PoolKey::Slots).to_owned();
        let raw: Vec<Value> = self.bounded(self.client().hvals::<Vec<Value>, _>(key)).await?;
        let mut out = raw.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|s| s.seq);
        Ok(out)
    }

    pub async fn note_health(&self, pool: &ServerId, pinged: u32, failed: u32) -> Result<(), ControlError> {
        let keys = self.keys(pool);
        let fields = vec![("hping", i64::from(pinged)), ("hfail", i64::from(failed))];
        self.bounded(self.client().hset::<i64, _, _>(keys.stats_key(), fields))
            .await
            .map(|_| ())
    }

    pub async fn note_timeout(&self, pool: &ServerId) -> Result<(), ControlError> {
        let keys = self.keys(pool);
        self.bounded(self.client().hincrby::<i64, _, _>(keys.stats_key(), "tmo", 1))
            .await
            .map(|_| ())
    }
}

impl EmbeddedControlPlane {
    pub async fn stats(&self, pool: &ServerId) -> Result<PoolStats, ControlError> {
        self.with_pool(pool, |p| p.stats())
    }

    pub async fn slots(&self, pool: &ServerId) -> Result<Vec<SlotRecord>, ControlError> {
        self.with_pool(pool, |p| {
            let mut out: Vec<SlotRecord> = p.slots.values().cloned().collect();
            out.sort_by_key(|s| s.seq);
            out
        })
    }

    pub async fn note_health(&self, pool: &ServerId, pinged: u32, failed: u32) -> Result<(), ControlError> {
        self.with_pool(pool, |p| {
            p.st.health_pinged = u64::from(pinged);
            p.st.health_failed = u64::from(failed);
        })
    }

    pub async fn note_timeout(&self, pool: &ServerId) -> Result<(), ControlError> {
        self.with_pool(pool, |p| p.st.timeouts += 1)
    }
}

impl Pool {
    /// `stats.lua`: the same figures, from the typed twin of the keys.
    fn stats(&self) -> PoolStats {
        let st = &self.st;
        let mut out = PoolStats {
            configured: self.cfg.is_some(),
            max_size: self.cfg.as_ref().map_or(0, |c| u64::from(c.max)),
            enabled: self.identity.as_ref().is_none_or(|i| i.enabled),
            slots: self.all.len() as u64,
            reservations: self.resv.len() as u64,
            leases: self.leases.len() as u64,
            bindings: self.bind.len() as u64,
            available: self.avail.len() as u64,
            fence: self.fence,
            acquisitions: st.acquisitions,
            releases: st.releases,
            creates: st.creates,
            destroys: st.destroys,
            timeouts: st.timeouts,
            rebinds: st.rebinds,
            errors: st.errors,
            expired: st.expired,
            health_pinged: st.health_pinged,
            health_failed: st.health_failed,
            wait: st.wait.clone(),
            hold: st.hold.clone(),
            endpoint_hold: st.endpoint_hold.clone(),
            affinity: st.affinity.clone(),
            breakers: {
                let now = now_ms();
                let state = |b: &EndpointBreaker| match b.open_ms {
                    0 => BreakerState::Closed,
                    _ if b.open_until_ms > now => BreakerState::Open,
                    _ => BreakerState::HalfOpen,
                };
                self.breakers
                    .iter()
                    .map(|(i, b)| {
                        let stats = EndpointBreakerStats {
                            failures: b.failures,
                            state: state(b),
                        };
                        (*i, stats)
                    })
                    .collect()
            },
            create_failures: st.create_failures,
            ..PoolStats::default()
        };
        for slot in self.slots.values() {
            match slot.state {
                SlotState::Ready => out.ready += 1,
                SlotState::Draining => out.draining += 1,
                SlotState::Unhealthy => out.unhealthy += 1,
                SlotState::Retired | SlotState::Closed => out.retired += 1,
            }
            if slot.leases > 0 {
                out.busy += 1;
            }
        }
        out
    }
}
