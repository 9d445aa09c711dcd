//! `warm` (leader only, fenced): a reservation for one more idle slot while the pool has fewer than
//! `pool_min_size` idle and room below its max (I1).
//!
//! Script: `lua/warm.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/warm.lua")));

impl RedisControlPlane {
    pub async fn warm(
        &self,
        pool: &ServerId,
        token: u64,
        min: u32,
        reservation: &str,
        holder: &str,
    ) -> Result<Option<Reservation>, ControlError> {
        let args = vec![
            Value::from(token.to_string()),
            Value::from(i64::from(min)),
            Value::from(reservation),
            Value::from(holder),
        ];
        let reply = self.eval_pool(&SCRIPT, pool, args).await?;
        match tag(&reply).as_deref() {
            Some("R") => Ok(Some(Reservation {
                id: reservation.to_owned(),
                endpoint: reply.get(2).and_then(int).unwrap_or(0) as u32,
            })),
            Some("N") => Ok(None),
            Some("F") => Err(stale_fence(&reply)),
            _ => Err(unexpected("warm", &reply)),
        }
    }
}

impl EmbeddedControlPlane {
    pub async fn warm(
        &self,
        pool: &ServerId,
        token: u64,
        min: u32,
        reservation: &str,
        holder: &str,
    ) -> Result<Option<Reservation>, ControlError> {
        self.with_pool(pool, |p| p.warm(token, min, reservation, holder))?
    }
}

impl Pool {
    /// `warm.lua`.
    fn warm(&mut self, token: u64, min: u32, id: &str, holder: &str) -> Result<Option<Reservation>, ControlError> {
        self.check_fence(token)
            .map_err(|newest| ControlError::StaleFence { newest })?;
        let Some(c) = self.cfg.clone() else { return Ok(None) };
        let idle = self.avail.len() as i64 + self.warm_reservations;
        if idle >= i64::from(min) || self.total() >= c.max {
            return Ok(None);
        }
        let Some(best) = self.pick_endpoint(&c, now_ms()) else {
            return Ok(None);
        };
        *self.per_endpoint.entry(best).or_default() += 1;
        self.warm_reservations += 1;
        self.resv.add(id, (now_ms() + c.resv_ttl) as f64);
        self.rdata.insert(
            id.to_owned(),
            Resv {
                ep: best,
                holder: holder.to_owned(),
                key: String::new(),
                lease: false,
                user: String::new(),
            },
        );
        Ok(Some(Reservation {
            id: id.to_owned(),
            endpoint: best,
        }))
    }
}
