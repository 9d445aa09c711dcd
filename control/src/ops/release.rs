//! `release`: a lease ends once (I3), reporting the request's outcome (latency, error, retire,
//! affinity); retired or draining slots nothing holds leave the pool.
//!
//! Script: `lua/release.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/release.lua")));

impl RedisControlPlane {
    pub async fn release(&self, pool: &ServerId, lease: &str, outcome: Outcome) -> Result<Changed, ControlError> {
        let latency = outcome.latency_ms.map_or(-1, |l| l.min(i64::MAX as u64) as i64);
        let args = vec![
            Value::from(lease),
            Value::from(latency),
            Value::from(i64::from(outcome.error)),
            Value::from(i64::from(outcome.retire)),
            Value::from(i64::from(outcome.affinity.code())),
        ];
        changed(self.eval_pool(&SCRIPT, pool, args).await?)
    }
}

impl EmbeddedControlPlane {
    pub async fn release(&self, pool: &ServerId, lease: &str, outcome: Outcome) -> Result<Changed, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else {
                return Changed::default();
            };
            let mut closed = Vec::new();
            let latency = outcome.latency_ms.map_or(-1, |l| l.min(i64::MAX as u64) as i64);
            let changed = p.release_lease(&c, lease, latency, outcome.error, outcome.retire, &mut closed);
            // `release.lua`'s affinity report: a count per kind, and the request time of
            // returning users (hits and misses).
            if changed {
                let ms = u64::try_from(latency).ok();
                let a = &mut p.st.affinity;
                match outcome.affinity {
                    Affinity::None => {}
                    Affinity::Hit => {
                        a.hits += 1;
                        a.hit_ms += ms.unwrap_or(0);
                    }
                    Affinity::Miss => {
                        a.misses += 1;
                        a.miss_ms += ms.unwrap_or(0);
                    }
                    Affinity::New => a.new += 1,
                }
            }
            Changed { changed, closed }
        })
    }
}
