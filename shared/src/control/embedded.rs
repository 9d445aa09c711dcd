//! The embedded control plane: the single node's in-process twin of the Redis one.
//!
//! It mirrors `lua/*.lua` function by function (same names: `refresh`, `settle`, `grant`,
//! `unbind_key`, `release_lease`, `reclaim`, …) over in-memory versions of the same thirteen keys,
//! so both backends make the same decisions and return the same errors; the conformance suite
//! runs unchanged against both. One mutex guards all pools — each operation is as atomic as a
//! Lua script, and none awaits while holding it. Its clock plays the role of Redis `TIME`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::{
    AcquireRequest, Affinity, Attempt, Campaign, Changed, Committed, ControlError, Lease, Outcome, PoolSpec, PoolStats,
    Reclaimed, Reservation, SlotMeta, SlotRecord, SlotState, SLOT_RECORD_VERSION,
};
use crate::domain::pool::{Isolation, Strategy};
use crate::domain::server::ServerId;

/// How many expired items of each kind an acquire reclaims on its way (as `acquire.lua`).
const ACQUIRE_RECLAIM_LIMIT: usize = 8;
/// An acquire's reclaim pass runs at most this often per pool unless the pool is out of capacity.
const RECLAIM_EVERY_MS: i64 = 1000;
/// Bound of the outbox of removed slots (`OUTBOX_MAX` in the prelude).
const OUTBOX_MAX: usize = 10_000;
/// Binding value while a key's first slot is being created (`PENDING` in the prelude).
const PENDING: &str = "resv:";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A sorted set: members ordered by (score, member), like a Redis ZSET.
#[derive(Debug, Default)]
struct ZSet {
    scores: HashMap<String, f64>,
    order: BTreeSet<(Score, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Score(f64);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl ZSet {
    fn add(&mut self, member: &str, score: f64) {
        if let Some(old) = self.scores.insert(member.to_owned(), score) {
            self.order.remove(&(Score(old), member.to_owned()));
        }
        self.order.insert((Score(score), member.to_owned()));
    }
    fn rem(&mut self, member: &str) {
        if let Some(old) = self.scores.remove(member) {
            self.order.remove(&(Score(old), member.to_owned()));
        }
    }
    fn score(&self, member: &str) -> Option<f64> {
        self.scores.get(member).copied()
    }
    fn len(&self) -> usize {
        self.scores.len()
    }
    fn first(&self) -> Option<String> {
        self.order.first().map(|(_, m)| m.clone())
    }
    /// First member with a score strictly above `score`.
    fn first_above(&self, score: f64) -> Option<String> {
        self.order.iter().find(|(s, _)| s.0 > score).map(|(_, m)| m.clone())
    }
    /// Members with score <= `max`, lowest first, at most `limit`.
    fn up_to(&self, max: f64, limit: usize) -> Vec<String> {
        self.order
            .iter()
            .take_while(|(s, _)| s.0 <= max)
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect()
    }
    fn clear(&mut self) {
        self.scores.clear();
        self.order.clear();
    }
}

/// The synced configuration (`cfg` hash).
#[derive(Clone, Debug)]
struct Cfg {
    strategy: Strategy,
    iso: Isolation,
    max: u32,
    cap: u32,
    lease_ttl: i64,
    idle_ttl: i64,
    resv_ttl: i64,
    weights: Vec<u32>,
}

impl Cfg {
    fn from_spec(spec: &PoolSpec) -> Cfg {
        Cfg {
            strategy: spec.strategy,
            iso: spec.isolation,
            max: spec.max_size,
            cap: spec.capacity.max(1),
            lease_ttl: spec.lease_ttl_ms as i64,
            idle_ttl: spec.idle_ttl_ms as i64,
            resv_ttl: spec.reservation_ttl_ms as i64,
            weights: if spec.endpoint_weights.is_empty() {
                vec![1]
            } else {
                spec.endpoint_weights.clone()
            },
        }
    }
    fn weight(&self, ep: u32) -> f64 {
        f64::from(self.weights.get(ep as usize).copied().unwrap_or(1))
    }
}

/// A reservation's data (`rdata`).
#[derive(Clone, Debug)]
struct Resv {
    ep: u32,
    holder: String,
    key: String,
    lease: bool,
}

/// One pool: the in-memory twin of its thirteen Redis keys.
#[derive(Debug)]
struct Pool {
    cfg: Option<Cfg>,
    gen: u64,
    slots: HashMap<String, SlotRecord>,
    all: ZSet,
    avail: ZSet,
    bload: ZSet,
    resv: ZSet,
    rdata: HashMap<String, Resv>,
    leases: ZSet,
    ldata: HashMap<String, String>,
    bind: HashMap<String, String>,
    bexp: ZSet,
    // `st`
    seq: u64,
    rr: u64,
    vtime: f64,
    fence: u64,
    counters: HashMap<String, i64>,
    per_endpoint: HashMap<u32, i64>,
    /// `closing`: removed slots no caller was told about yet.
    closing: VecDeque<SlotRecord>,
    /// `nrc`: when an acquire next reclaims on its way in.
    next_reclaim: i64,
    /// `wres`: warm-up creations in flight.
    warm_reservations: i64,
    notify: watch::Sender<u64>,
}

impl Pool {
    fn new() -> Pool {
        Pool {
            cfg: None,
            gen: 0,
            slots: HashMap::new(),
            all: ZSet::default(),
            avail: ZSet::default(),
            bload: ZSet::default(),
            resv: ZSet::default(),
            rdata: HashMap::new(),
            leases: ZSet::default(),
            ldata: HashMap::new(),
            bind: HashMap::new(),
            bexp: ZSet::default(),
            seq: 0,
            rr: 0,
            vtime: 0.0,
            fence: 0,
            counters: HashMap::new(),
            per_endpoint: HashMap::new(),
            closing: VecDeque::new(),
            next_reclaim: 0,
            warm_reservations: 0,
            notify: watch::channel(0).0,
        }
    }

    fn bump(&mut self, field: &str, by: i64) {
        match self.counters.get_mut(field) {
            Some(v) => *v += by,
            None => {
                self.counters.insert(field.to_owned(), by);
            }
        }
    }

    /// `observe` in the prelude: one histogram observation.
    fn observe(&mut self, prefix: &str, ms: u64) {
        self.bump(&format!("{prefix}b:{}", super::bucket_of(ms)), 1);
        self.bump(&format!("{prefix}ms"), ms.min(i64::MAX as u64) as i64);
    }

    fn publish(&self) {
        self.notify.send_modify(|v| *v += 1);
    }

    fn total(&self) -> u32 {
        (self.all.len() + self.resv.len()) as u32
    }

    fn eff_weight(s: &SlotRecord) -> f64 {
        let w = s.weight * (1.0 - s.error_rate.min(0.95)) * 100.0 / (100.0 + s.latency_ewma_ms);
        w.max(0.001)
    }

    fn selectable(c: &Cfg, s: &SlotRecord) -> bool {
        if s.state != SlotState::Ready {
            return false;
        }
        if c.iso == Isolation::Session {
            return s.used == 0 && s.leases == 0;
        }
        s.leases < c.cap
    }

    fn avail_score(c: &Cfg, s: &SlotRecord) -> f64 {
        if c.iso == Isolation::Session || c.strategy == Strategy::RoundRobin {
            return s.seq as f64;
        }
        if c.strategy == Strategy::Weighted {
            return s.pass;
        }
        f64::from(s.leases)
    }

    /// `refresh`: the slot's place in the selection sets (the pass adjustment only scores; it is
    /// not stored, exactly as in the script).
    fn refresh(&mut self, c: &Cfg, s: &SlotRecord) {
        if Self::selectable(c, s) {
            let mut scored = s.clone();
            if c.strategy == Strategy::Weighted && scored.pass < self.vtime {
                scored.pass = self.vtime;
            }
            self.avail.add(&s.id, Self::avail_score(c, &scored));
        } else {
            self.avail.rem(&s.id);
        }
        if c.iso == Isolation::Shared && c.strategy == Strategy::Sticky {
            if s.state == SlotState::Ready {
                self.bload.add(&s.id, f64::from(s.bindings));
            } else {
                self.bload.rem(&s.id);
            }
        }
    }

    fn delete_slot(&mut self, mut s: SlotRecord) -> SlotRecord {
        self.slots.remove(&s.id);
        self.all.rem(&s.id);
        self.avail.rem(&s.id);
        self.bload.rem(&s.id);
        *self.per_endpoint.entry(s.endpoint).or_default() -= 1;
        self.bump("des", 1);
        s.state = SlotState::Closed;
        s
    }

    /// `settle`: deletes a slot nothing holds any more, else stores it. True when deleted.
    fn settle(&mut self, c: &Cfg, s: SlotRecord, closed: &mut Vec<SlotRecord>) -> bool {
        let gone = (matches!(s.state, SlotState::Retired | SlotState::Unhealthy) && s.leases == 0)
            || (s.state == SlotState::Draining && s.leases == 0 && s.bindings == 0);
        if gone {
            closed.push(self.delete_slot(s));
            return true;
        }
        self.slots.insert(s.id.clone(), s.clone());
        self.refresh(c, &s);
        false
    }

    fn grant(&mut self, c: &Cfg, mut s: SlotRecord, lease_id: &str, holder: &str, now: i64) -> (SlotRecord, i64) {
        s.leases += 1;
        s.reuse_count += 1;
        s.last_used_ms = now;
        if c.strategy == Strategy::Weighted && c.iso == Isolation::Shared {
            if s.pass < self.vtime {
                s.pass = self.vtime;
            }
            self.vtime = s.pass;
            s.pass += 1_000_000.0 / Self::eff_weight(&s);
        }
        self.slots.insert(s.id.clone(), s.clone());
        self.refresh(c, &s);
        let expires = now + c.lease_ttl;
        self.leases.add(lease_id, expires as f64);
        self.ldata.insert(lease_id.to_owned(), format!("{}|{holder}", s.id));
        self.bump("acq", 1);
        (s, expires)
    }

    fn unbind_key(&mut self, c: &Cfg, key: &str, closed: &mut Vec<SlotRecord>) -> bool {
        let sid = self.bind.remove(key);
        self.bexp.rem(key);
        let Some(sid) = sid else { return false };
        if let Some(mut s) = self.slots.get(&sid).cloned() {
            s.bindings = s.bindings.saturating_sub(1);
            if s.used == 1 {
                s.state = SlotState::Retired;
            }
            self.settle(c, s, closed);
        }
        self.publish();
        true
    }

    fn release_lease(
        &mut self,
        c: &Cfg,
        lease_id: &str,
        latency: i64,
        err: bool,
        retire: bool,
        closed: &mut Vec<SlotRecord>,
    ) -> bool {
        let Some(ld) = self.ldata.remove(lease_id) else {
            return false;
        };
        self.leases.rem(lease_id);
        let sid = ld.split('|').next().unwrap_or_default().to_owned();
        if let Some(mut s) = self.slots.get(&sid).cloned() {
            s.leases = s.leases.saturating_sub(1);
            if latency >= 0 {
                let lat = latency as f64;
                s.latency_ewma_ms = if s.latency_ewma_ms == 0.0 {
                    lat
                } else {
                    s.latency_ewma_ms * 0.8 + lat * 0.2
                };
                self.observe("h", latency as u64);
                self.bump(&format!("hn:{}", s.endpoint), 1);
                self.bump(&format!("hm:{}", s.endpoint), latency);
            }
            s.error_rate = s.error_rate * 0.9 + if err { 0.1 } else { 0.0 };
            // `release_lease` in the prelude: under `none` a session is never leased twice.
            if retire || (c.strategy == Strategy::None && s.leases == 0 && s.bindings == 0) {
                s.state = SlotState::Retired;
            }
            self.settle(c, s, closed);
        }
        if err {
            self.bump("err", 1);
        }
        self.bump("rel", 1);
        self.publish();
        true
    }

    fn abort_resv(&mut self, id: &str) -> bool {
        self.resv.rem(id);
        let Some(r) = self.rdata.remove(id) else { return false };
        *self.per_endpoint.entry(r.ep).or_default() -= 1;
        if !r.lease {
            self.warm_reservations -= 1;
        }
        if !r.key.is_empty() && self.bind.get(&r.key).is_some_and(|v| *v == format!("{PENDING}{id}")) {
            self.bind.remove(&r.key);
            self.bexp.rem(&r.key);
        }
        self.publish();
        true
    }

    /// `push_outbox`.
    fn push_outbox(&mut self, closed: Vec<SlotRecord>) {
        self.closing.extend(closed);
        while self.closing.len() > OUTBOX_MAX {
            self.closing.pop_front();
        }
    }

    fn reclaim(&mut self, c: &Cfg, now: i64, limit: usize, closed: &mut Vec<SlotRecord>) -> (u32, u32, u32) {
        let (mut n_l, mut n_b, mut n_r) = (0, 0, 0);
        for id in self.leases.up_to(now as f64, limit) {
            if self.release_lease(c, &id, -1, false, false, closed) {
                n_l += 1;
                self.bump("exp", 1);
            }
        }
        for key in self.bexp.up_to(now as f64, limit) {
            if self.unbind_key(c, &key, closed) {
                n_b += 1;
            }
        }
        for id in self.resv.up_to(now as f64, limit) {
            if self.abort_resv(&id) {
                n_r += 1;
            }
        }
        (n_l, n_b, n_r)
    }

    fn check_fence(&mut self, token: u64) -> Result<(), u64> {
        if token < self.fence {
            return Err(self.fence);
        }
        self.fence = token;
        Ok(())
    }

    fn lease(&self, lease_id: &str, s: SlotRecord, expires: i64, fresh: bool) -> Lease {
        Lease {
            id: lease_id.to_owned(),
            slot: s,
            expires_ms: expires,
            fresh,
        }
    }

    fn reserve(&mut self, c: &Cfg, lease_id: &str, holder: &str, key: &str, now: i64) -> Attempt {
        let total = self.total();
        if total >= c.max {
            return Attempt::Wait {
                in_use: total,
                limit: c.max,
            };
        }
        let best = self.pick_endpoint(c);
        *self.per_endpoint.entry(best).or_default() += 1;
        self.resv.add(lease_id, (now + c.resv_ttl) as f64);
        self.rdata.insert(
            lease_id.to_owned(),
            Resv {
                ep: best,
                holder: holder.to_owned(),
                key: key.to_owned(),
                lease: true,
            },
        );
        if !key.is_empty() && !self.bind.contains_key(key) {
            self.bind.insert(key.to_owned(), format!("{PENDING}{lease_id}"));
            self.bexp.add(key, (now + c.idle_ttl) as f64);
        }
        Attempt::Create(Reservation {
            id: lease_id.to_owned(),
            endpoint: best,
        })
    }

    /// `pick_endpoint`: the endpoint with the fewest slots (and creations in flight) for its weight.
    fn pick_endpoint(&self, c: &Cfg) -> u32 {
        let mut best = 0u32;
        let mut best_load: Option<f64> = None;
        for (i, w) in c.weights.iter().enumerate() {
            let n = self.per_endpoint.get(&(i as u32)).copied().unwrap_or(0) as f64;
            let load = n / f64::from(*w);
            if best_load.is_none_or(|b| load < b) {
                best = i as u32;
                best_load = Some(load);
            }
        }
        best
    }

    /// `warm.lua`.
    fn warm(&mut self, token: u64, min: u32, id: &str, holder: &str) -> Result<Option<Reservation>, ControlError> {
        self.check_fence(token)
            .map_err(|newest| ControlError::StaleFence { newest })?;
        let Some(c) = self.cfg.clone() else { return Ok(None) };
        let idle = self.avail.len() as i64 + self.warm_reservations;
        if idle >= i64::from(min) || self.total() >= c.max {
            return Ok(None);
        }
        let best = self.pick_endpoint(&c);
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
            },
        );
        Ok(Some(Reservation {
            id: id.to_owned(),
            endpoint: best,
        }))
    }

    fn bind(&mut self, c: &Cfg, s: &mut SlotRecord, key: &str, now: i64) {
        self.bind.insert(key.to_owned(), s.id.clone());
        self.bexp.add(key, (now + c.idle_ttl) as f64);
        s.bindings += 1;
    }

    /// `acquire.lua`.
    fn acquire(&mut self, req: &AcquireRequest) -> Result<Attempt, ControlError> {
        let c = self.cfg.clone().ok_or(ControlError::NotConfigured)?;
        let now = now_ms();
        // Reclaim at most once a second on the way in, and always before answering "wait".
        let mut reclaimed = false;
        if now >= self.next_reclaim {
            self.reclaim_now(&c, now);
            reclaimed = true;
        }
        let lease_id = req.lease_id.as_str();

        if let Some(exp) = self.leases.score(lease_id) {
            let slot = self
                .ldata
                .get(lease_id)
                .and_then(|ld| ld.split('|').next())
                .and_then(|sid| self.slots.get(sid));
            if let Some(s) = slot.cloned() {
                return Ok(Attempt::Leased(self.lease(lease_id, s, exp as i64, false)));
            }
        }
        if let Some(r) = self.rdata.get(lease_id) {
            return Ok(Attempt::Create(Reservation {
                id: lease_id.to_owned(),
                endpoint: r.ep,
            }));
        }
        let mut reply = self.choose(&c, req, now)?;
        if matches!(reply, Attempt::Wait { .. }) && !reclaimed {
            self.reclaim_now(&c, now);
            reply = self.choose(&c, req, now)?;
        }
        if !matches!(reply, Attempt::Wait { .. }) {
            self.observe("w", req.waited_ms);
        }
        Ok(reply)
    }

    fn reclaim_now(&mut self, c: &Cfg, now: i64) {
        let mut closed = Vec::new();
        self.reclaim(c, now, ACQUIRE_RECLAIM_LIMIT, &mut closed);
        self.push_outbox(closed);
        self.next_reclaim = now + RECLAIM_EVERY_MS;
    }

    /// `choose` in `acquire.lua`: the selection after the idempotency checks.
    fn choose(&mut self, c: &Cfg, req: &AcquireRequest, now: i64) -> Result<Attempt, ControlError> {
        let c = c.clone();
        let (lease_id, holder) = (req.lease_id.as_str(), req.holder.as_str());
        let key = req.key.as_deref().unwrap_or("");

        if !key.is_empty() {
            let mut bound = self.bind.get(key).cloned();
            if let Some(rid) = bound.as_deref().and_then(|v| v.strip_prefix(PENDING)) {
                if self.resv.score(rid).is_some() {
                    return Ok(Attempt::Wait {
                        in_use: 0,
                        limit: c.cap,
                    });
                }
                self.bind.remove(key);
                self.bexp.rem(key);
                bound = None;
            }
            if let Some(sid) = bound {
                let s = self.slots.get(&sid).cloned();
                match s {
                    Some(s) if matches!(s.state, SlotState::Ready | SlotState::Draining) => {
                        self.bexp.add(key, (now + c.idle_ttl) as f64);
                        if s.leases < c.cap {
                            let (s, expires) = self.grant(&c, s, lease_id, holder, now);
                            return Ok(Attempt::Leased(self.lease(lease_id, s, expires, false)));
                        }
                        return Ok(Attempt::Wait {
                            in_use: s.leases,
                            limit: c.cap,
                        });
                    }
                    s => {
                        let session_bound = s.as_ref().is_some_and(|s| s.used == 1);
                        let mut lost = Vec::new();
                        self.unbind_key(&c, key, &mut lost);
                        self.push_outbox(lost);
                        if c.iso == Isolation::Session || session_bound {
                            return Err(ControlError::BindingLost);
                        }
                        self.bump("reb", 1);
                    }
                }
            }
        }

        if c.strategy == Strategy::None {
            return Ok(self.reserve(&c, lease_id, holder, key, now));
        }

        if c.iso == Isolation::Session {
            let Some(first) = self.avail.first() else {
                return Ok(self.reserve(&c, lease_id, holder, key, now));
            };
            let Some(mut s) = self.slots.get(&first).cloned() else {
                return Err(ControlError::Protocol(format!("slot {first} in avail but not stored")));
            };
            if !key.is_empty() {
                s.used = 1;
                self.bind(&c, &mut s, key, now);
            }
            let (s, expires) = self.grant(&c, s, lease_id, holder, now);
            return Ok(Attempt::Leased(self.lease(lease_id, s, expires, true)));
        }

        if c.strategy == Strategy::Sticky && !key.is_empty() {
            let pick = self.bload.first().and_then(|id| self.slots.get(&id).cloned());
            if let Some(s) = &pick {
                if s.leases >= c.cap && self.total() < c.max {
                    return Ok(self.reserve(&c, lease_id, holder, key, now));
                }
            }
            let Some(mut s) = pick else {
                return Ok(self.reserve(&c, lease_id, holder, key, now));
            };
            self.bind(&c, &mut s, key, now);
            if s.leases < c.cap {
                let (s, expires) = self.grant(&c, s, lease_id, holder, now);
                return Ok(Attempt::Leased(self.lease(lease_id, s, expires, false)));
            }
            self.slots.insert(s.id.clone(), s.clone());
            self.refresh(&c, &s);
            return Ok(Attempt::Wait {
                in_use: s.leases,
                limit: c.cap,
            });
        }

        let pick = if c.strategy == Strategy::RoundRobin {
            self.avail.first_above(self.rr as f64).or_else(|| self.avail.first())
        } else {
            self.avail.first()
        };
        let Some(pick) = pick else {
            return Ok(self.reserve(&c, lease_id, holder, key, now));
        };
        let Some(s) = self.slots.get(&pick).cloned() else {
            return Err(ControlError::Protocol(format!("slot {pick} in avail but not stored")));
        };
        if c.strategy == Strategy::RoundRobin {
            self.rr = s.seq;
        }
        let (s, expires) = self.grant(&c, s, lease_id, holder, now);
        Ok(Attempt::Leased(self.lease(lease_id, s, expires, false)))
    }

    /// `commit.lua`.
    fn commit(&mut self, resv_id: &str, slot_id: &str, meta: &SlotMeta) -> Result<Committed, ControlError> {
        let c = self.cfg.clone().ok_or(ControlError::NotConfigured)?;
        let now = now_ms();
        if let Some(exp) = self.leases.score(resv_id) {
            let slot = self
                .ldata
                .get(resv_id)
                .and_then(|ld| ld.split('|').next())
                .and_then(|sid| self.slots.get(sid));
            if let Some(s) = slot.cloned() {
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
        self.bump("cre", 1);
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
            self.bind.insert(r.key.clone(), slot_id.to_owned());
            self.bexp.add(&r.key, (now + c.idle_ttl) as f64);
            s.bindings = 1;
            if c.iso == Isolation::Session {
                s.used = 1;
            }
        }
        let (s, expires) = self.grant(&c, s, resv_id, &r.holder, now);
        Ok(Committed::Leased(self.lease(resv_id, s, expires, true)))
    }

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

    /// `stats.lua`: the same `name, value` pairs, parsed by the same code.
    fn stats(&self) -> PoolStats {
        let mut pairs: Vec<(String, u64)> = vec![
            ("configured".into(), u64::from(self.cfg.is_some())),
            ("slots".into(), self.all.len() as u64),
            ("reservations".into(), self.resv.len() as u64),
            ("leases".into(), self.leases.len() as u64),
            ("bindings".into(), self.bind.len() as u64),
            ("available".into(), self.avail.len() as u64),
            ("st_fence".into(), self.fence),
        ];
        let mut states: HashMap<&str, u64> = HashMap::new();
        for slot in self.slots.values() {
            let name = match slot.state {
                SlotState::Ready => "state_ready",
                SlotState::Draining => "state_draining",
                SlotState::Unhealthy => "state_unhealthy",
                SlotState::Retired | SlotState::Closed => "state_retired",
            };
            *states.entry(name).or_default() += 1;
            if slot.leases > 0 {
                *states.entry("state_busy").or_default() += 1;
            }
        }
        pairs.extend(states.into_iter().map(|(k, v)| (k.to_owned(), v)));
        pairs.extend(
            self.counters
                .iter()
                .map(|(k, v)| (format!("st_{k}"), (*v).max(0) as u64)),
        );
        PoolStats::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), *v)))
    }
}

#[derive(Debug, Default)]
struct State {
    pools: HashMap<ServerId, Pool>,
    /// `"holder|term"` and its expiry (ms).
    leader: Option<(String, i64)>,
    term: u64,
}

/// In-process twin of the Redis control plane.
#[derive(Debug, Default)]
pub struct EmbeddedControlPlane {
    state: Mutex<State>,
}

impl EmbeddedControlPlane {
    pub fn new() -> Self {
        EmbeddedControlPlane::default()
    }

    /// Runs `f` on the pool's state (created on first use, unconfigured).
    fn with_pool<T>(&self, pool: &ServerId, f: impl FnOnce(&mut Pool) -> T) -> Result<T, ControlError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| ControlError::Protocol("control state poisoned".into()))?;
        Ok(f(state.pools.entry(pool.clone()).or_insert_with(Pool::new)))
    }

    pub async fn ping(&self) -> Result<(), ControlError> {
        Ok(())
    }

    pub async fn sync(&self, pool: &ServerId, spec: &PoolSpec) -> Result<u64, ControlError> {
        self.with_pool(pool, |p| p.sync(spec))
    }

    pub async fn try_acquire(&self, pool: &ServerId, req: &AcquireRequest) -> Result<Attempt, ControlError> {
        self.with_pool(pool, |p| p.acquire(req))?
    }

    pub async fn commit(
        &self,
        pool: &ServerId,
        reservation: &str,
        slot_id: &str,
        meta: &SlotMeta,
    ) -> Result<Committed, ControlError> {
        self.with_pool(pool, |p| p.commit(reservation, slot_id, meta))?
    }

    pub async fn abort(&self, pool: &ServerId, reservation: &str) -> Result<bool, ControlError> {
        self.with_pool(pool, |p| p.abort_resv(reservation))
    }

    pub async fn release(&self, pool: &ServerId, lease: &str, outcome: Outcome) -> Result<Changed, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else {
                return Changed::default();
            };
            let mut closed = Vec::new();
            let latency = outcome.latency_ms.map_or(-1, |l| l.min(i64::MAX as u64) as i64);
            let changed = p.release_lease(&c, lease, latency, outcome.error, outcome.retire, &mut closed);
            // `release.lua`'s affinity report.
            let field = match outcome.affinity {
                Affinity::None => None,
                Affinity::Hit => Some(("kh", "khm")),
                Affinity::Miss => Some(("km", "kmm")),
                Affinity::New => Some(("kn", "")),
            };
            if let (true, Some((count, sum))) = (changed, field) {
                p.bump(count, 1);
                if latency >= 0 && !sum.is_empty() {
                    p.bump(sum, latency);
                }
            }
            Changed { changed, closed }
        })
    }

    pub async fn renew(&self, pool: &ServerId, lease: &str) -> Result<Option<i64>, ControlError> {
        self.with_pool(pool, |p| {
            let c = p.cfg.clone()?;
            let now = now_ms();
            // An expired lease stays dead even before a reclaim pass removes it.
            if p.leases.score(lease)? <= now as f64 {
                return None;
            }
            let expires = now + c.lease_ttl;
            p.leases.add(lease, expires as f64);
            Some(expires)
        })
    }

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

    pub async fn touch(&self, pool: &ServerId, key: &str) -> Result<bool, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else { return false };
            if !p.bind.contains_key(key) {
                return false;
            }
            p.bexp.add(key, (now_ms() + c.idle_ttl) as f64);
            true
        })
    }

    pub async fn mark(&self, pool: &ServerId, slot: &str, state: SlotState) -> Result<Changed, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else {
                return Changed::default();
            };
            let Some(mut s) = p.slots.get(slot).cloned() else {
                return Changed::default();
            };
            s.state = if state == SlotState::Closed {
                SlotState::Retired
            } else {
                state
            };
            let mut closed = Vec::new();
            p.settle(&c, s, &mut closed);
            p.publish();
            Changed { changed: true, closed }
        })
    }

    pub async fn reclaim(&self, pool: &ServerId, limit: u32) -> Result<Reclaimed, ControlError> {
        self.with_pool(pool, |p| {
            let Some(c) = p.cfg.clone() else {
                return Reclaimed::default();
            };
            let mut closed = Vec::new();
            let (leases, bindings, reservations) = p.reclaim(&c, now_ms(), limit as usize, &mut closed);
            let pending = p.closing.len().min(limit as usize);
            closed.extend(p.closing.drain(..pending));
            Reclaimed {
                leases,
                bindings,
                reservations,
                closed,
            }
        })
    }

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
            p.counters.insert("hping".to_owned(), i64::from(pinged));
            p.counters.insert("hfail".to_owned(), i64::from(failed));
        })
    }

    pub async fn note_timeout(&self, pool: &ServerId) -> Result<(), ControlError> {
        self.with_pool(pool, |p| p.bump("tmo", 1))
    }

    pub async fn pools(&self) -> Result<Vec<ServerId>, ControlError> {
        let state = self
            .state
            .lock()
            .map_err(|_| ControlError::Protocol("control state poisoned".into()))?;
        let mut out: Vec<ServerId> = state
            .pools
            .iter()
            .filter(|(_, p)| p.cfg.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        out.sort();
        Ok(out)
    }

    pub async fn changes(&self, pool: &ServerId) -> Result<watch::Receiver<u64>, ControlError> {
        self.with_pool(pool, |p| p.notify.subscribe())
    }

    fn leader_state(&self) -> Result<std::sync::MutexGuard<'_, State>, ControlError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| ControlError::Protocol("control state poisoned".into()))?;
        // The holder key expires on its own, as with Redis PX.
        if state.leader.as_ref().is_some_and(|(_, exp)| *exp <= now_ms()) {
            state.leader = None;
        }
        Ok(state)
    }

    pub async fn leader(&self) -> Result<Option<(String, u64)>, ControlError> {
        let state = self.leader_state()?;
        Ok(state.leader.as_ref().and_then(|(v, _)| super::parse_leader(v)))
    }

    pub async fn campaign(&self, holder: &str, ttl: Duration) -> Result<Campaign, ControlError> {
        let mut state = self.leader_state()?;
        if let Some((by, _)) = &state.leader {
            return Ok(match by.rsplit_once('|') {
                Some((h, term)) if h == holder => Campaign::Won {
                    term: term.parse().unwrap_or(0),
                },
                _ => Campaign::Held { by: by.clone() },
            });
        }
        state.term += 1;
        let term = state.term;
        state.leader = Some((format!("{holder}|{term}"), now_ms() + ttl.as_millis() as i64));
        Ok(Campaign::Won { term })
    }

    pub async fn leader_op(&self, op: &str, holder: &str, term: u64, ttl: Duration) -> Result<bool, ControlError> {
        let mut state = self.leader_state()?;
        let mine = format!("{holder}|{term}");
        if state.leader.as_ref().map(|(v, _)| v) != Some(&mine) {
            return Ok(false);
        }
        match op {
            "renew" => state.leader = Some((mine, now_ms() + ttl.as_millis() as i64)),
            "resign" => state.leader = None,
            other => return Err(ControlError::Protocol(format!("unknown leader op {other}"))),
        }
        Ok(true)
    }

    pub async fn fence(&self, pool: &ServerId, token: u64) -> Result<(), ControlError> {
        self.with_pool(pool, |p| p.check_fence(token))?
            .map_err(|newest| ControlError::StaleFence { newest })
    }

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

    pub async fn recycle(
        &self,
        pool: &ServerId,
        token: u64,
        max_age: Duration,
        limit: u32,
    ) -> Result<Vec<SlotRecord>, ControlError> {
        self.with_pool(pool, |p| {
            p.check_fence(token)
                .map_err(|newest| ControlError::StaleFence { newest })?;
            let Some(c) = p.cfg.clone() else { return Ok(vec![]) };
            let cutoff = now_ms() - max_age.as_millis() as i64;
            let mut closed = Vec::new();
            for id in p.all.up_to(cutoff as f64, limit as usize) {
                if let Some(mut s) = p.slots.get(&id).cloned() {
                    if s.leases == 0 && s.bindings == 0 {
                        s.state = SlotState::Retired;
                        p.settle(&c, s, &mut closed);
                    }
                }
            }
            Ok(closed)
        })?
    }
}
