//! `commit`: a reservation becomes a slot (I1: only for a live reservation), leased to the
//! reservation's acquirer and bound to its key, or added idle (warm-up).
//!
//! Script: `lua/commit.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/commit.lua")));

impl RedisControlPlane {
    pub async fn commit(
        &self,
        pool: &ServerId,
        reservation: &str,
        slot_id: &str,
        meta: &SlotMeta,
    ) -> Result<Committed, ControlError> {
        let args = vec![
            Value::from(reservation),
            Value::from(slot_id),
            Value::Bytes(meta.encode().into()),
        ];
        let reply = self.eval_pool(&SCRIPT, pool, args).await?;
        match tag(&reply).as_deref() {
            Some("L") => Ok(Committed::Leased(lease(&reply)?)),
            Some("C") => Ok(Committed::Added(slot_id.to_owned())),
            Some("E") => Err(script_error(&reply.get(1).and_then(text).unwrap_or_default())),
            _ => Err(unexpected("commit", &reply)),
        }
    }
}

impl EmbeddedControlPlane {
    pub async fn commit(
        &self,
        pool: &ServerId,
        reservation: &str,
        slot_id: &str,
        meta: &SlotMeta,
    ) -> Result<Committed, ControlError> {
        self.with_pool(pool, |p| p.commit(reservation, slot_id, meta))?
    }
}

impl Pool {
    /// `commit.lua`.
    fn commit(&mut self, resv_id: &str, slot_id: &str, meta: &SlotMeta) -> Result<Committed, ControlError> {
        let c = self.cfg.clone().ok_or(ControlError::NotConfigured)?;
        let now = now_ms();
        if let Some(exp) = self.leases.score(resv_id) {
            if let Some(s) = self.leased_slot(resv_id).cloned() {
                return Ok(Committed::Leased(self.lease(resv_id, s, exp as i64, true)));
            }
        }
        let Some(r) = self.rdata.remove(resv_id) else {
            if self.slots.contains_key(slot_id) {
                return Ok(Committed::Added(slot_id.to_owned()));
            }
            return Err(ControlError::ReservationGone);
        };
        self.resv.rem(resv_id);
        self.seq += 1;
        let mut s = SlotRecord {
            v: SLOT_RECORD_VERSION,
            id: slot_id.to_owned(),
            state: SlotState::Ready,
            endpoint: r.ep,
            weight: c.weight(r.ep),
            leases: 0,
            bindings: 0,
            seq: self.seq,
            created_ms: now,
            last_used_ms: now,
            reuse_count: 0,
            latency_ewma_ms: 0.0,
            error_rate: 0.0,
            pass: self.vtime,
            used: 0,
            meta: meta.clone(),
        };
        self.all.add(slot_id, now as f64);
        self.st.creates += 1;
        self.breakers.remove(&r.ep);
        self.st.create_failures = 0;
        if !r.lease {
            self.warm_reservations -= 1;
            self.slots.insert(s.id.clone(), s.clone());
            self.refresh(&c, &s);
            self.publish();
            return Ok(Committed::Added(slot_id.to_owned()));
        }
        if !r.key.is_empty() {
            if self.bind.get(&r.key) != Some(&format!("{PENDING}{resv_id}")) {
                self.slots.insert(s.id.clone(), s.clone());
                self.refresh(&c, &s);
                self.publish();
                return Ok(Committed::Added(slot_id.to_owned()));
            }
            self.bind_put(&r.key, slot_id.to_owned());
            self.bexp.add(&r.key, (now + c.first_ttl(&r.key)) as f64);
            s.bindings = 1;
            if c.iso == Isolation::Session {
                s.used = 1;
            }
        }
        let (s, expires) = self.grant(&c, s, resv_id, &r.holder, now, &r.user);
        Ok(Committed::Leased(self.lease(resv_id, s, expires, true)))
    }
}
