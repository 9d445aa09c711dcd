//! One pool's state in the embedded control plane: the in-memory twin of its thirteen Redis keys
//! ([`Pool`]), and the prelude's helpers (`lua/prelude.lua`) under the same names — `refresh`,
//! `settle`, `grant`, `unbind_key`, `release_lease`, `abort_resv`, `push_outbox`, `reclaim`,
//! `check_fence`, `reserve`, `pick_endpoint` — so both backends make the same decisions. The
//! operations themselves live beside their scripts in `control/ops/`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tokio::sync::watch;

use super::zset::ZSet;
use crate::{
    bucket_of, AffinityStats, Attempt, Breaker, BreakerState, ControlError, EndpointOutcome, Histogram, Lease,
    PoolIdentity, PoolSpec, Reservation, SlotRecord, SlotState,
};
use poolgate_shared::domain::pool::{Isolation, Strategy};

/// Bound of the outbox of removed slots (`OUTBOX_MAX` in the prelude).
pub(crate) const OUTBOX_MAX: usize = 10_000;
/// Binding value while a key's first slot is being created (`PENDING` in the prelude).
pub(crate) const PENDING: &str = "resv:";

/// The embedded plane's clock: it plays the role of Redis `TIME`.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The synced configuration (`cfg` hash).
#[derive(Clone, Debug)]
pub(crate) struct Cfg {
    pub(crate) strategy: Strategy,
    pub(crate) iso: Isolation,
    pub(crate) max: u32,
    pub(crate) cap: u32,
    pub(crate) lease_ttl: i64,
    pub(crate) idle_ttl: i64,
    pub(crate) resv_ttl: i64,
    pub(crate) weights: Vec<u32>,
    /// Fairness (`qs`, `qi`, `ut`, `rl`, `rb`; see [`crate::Fairness`]).
    pub(crate) qs: u32,
    pub(crate) qi: u32,
    pub(crate) ut: i64,
    pub(crate) rl: u32,
    pub(crate) rb: u32,
}

impl Cfg {
    pub(crate) fn from_spec(spec: &PoolSpec) -> Cfg {
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
            qs: spec.fairness.sessions_per_user,
            qi: spec.fairness.inflight_per_user,
            ut: spec.fairness.unused_ttl_ms as i64,
            rl: spec.fairness.rate_per_user,
            rb: spec.fairness.rate_burst,
        }
    }

    /// `first_ttl` in the prelude: a new client session ends after the unused TTL unless used.
    pub(crate) fn first_ttl(&self, key: &str) -> i64 {
        if self.ut > 0 && session_user(key).is_some() {
            self.ut.min(self.idle_ttl)
        } else {
            self.idle_ttl
        }
    }
    pub(crate) fn weight(&self, ep: u32) -> f64 {
        f64::from(self.weights.get(ep as usize).copied().unwrap_or(1))
    }
}

/// `session_user` in the prelude: the user of a client-session binding key
/// (`session:<user>:<server>:<nonce>`); `None` for the other forms.
pub(crate) fn session_user(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("session:")?;
    rest.find(':').map(|i| &rest[..i])
}

/// A reservation's data (`rdata`).
#[derive(Clone, Debug)]
pub(crate) struct Resv {
    pub(crate) ep: u32,
    pub(crate) holder: String,
    pub(crate) key: String,
    pub(crate) lease: bool,
    /// The user the lease goes to ('' = anonymous).
    pub(crate) user: String,
}

/// A lease's data (`ldata`: `"slot|holder"` in Redis).
#[derive(Clone, Debug)]
pub(crate) struct LeaseData {
    pub(crate) slot: String,
    /// The node holding it: only for diagnostics (as in Redis), no decision reads it.
    #[allow(dead_code)]
    pub(crate) holder: String,
    /// The user holding it ('' = anonymous): its in-flight count drops on release.
    pub(crate) user: String,
}

/// The fleet-wide counters of the `st` hash (`acq`, `rel`, `cre`, `des`, `tmo`, `reb`, `err`,
/// `exp`, `hping`, `hfail`, the wait (`wb:*`, `wms`) and request-time (`hb:*`, `hms`)
/// histograms, `hn:*`/`hm:*` per endpoint and the affinity reports `k*`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) acquisitions: u64,
    pub(crate) releases: u64,
    pub(crate) creates: u64,
    pub(crate) destroys: u64,
    pub(crate) timeouts: u64,
    pub(crate) rebinds: u64,
    pub(crate) errors: u64,
    pub(crate) expired: u64,
    pub(crate) health_pinged: u64,
    pub(crate) health_failed: u64,
    /// `cfr`: slot creations failed in a row.
    pub(crate) create_failures: u64,
    pub(crate) wait: Histogram,
    pub(crate) hold: Histogram,
    /// Per endpoint index: (requests, summed ms).
    pub(crate) endpoint_hold: BTreeMap<u32, (u64, u64)>,
    pub(crate) affinity: AffinityStats,
}

/// `observe` in the prelude: one histogram observation.
pub(crate) fn observe(h: &mut Histogram, ms: u64) {
    if let Some(b) = h.buckets.get_mut(bucket_of(ms)) {
        *b += 1;
    }
    h.sum_ms = h.sum_ms.saturating_add(ms);
}

/// One endpoint's breaker (`bf`, `bo`, `bp`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EndpointBreaker {
    pub(crate) failures: u64,
    pub(crate) open_until_ms: i64,
    pub(crate) open_ms: i64,
}

/// One pool: the in-memory twin of its fourteen Redis keys.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) cfg: Option<Cfg>,
    pub(crate) gen: u64,
    pub(crate) slots: HashMap<String, SlotRecord>,
    pub(crate) all: ZSet,
    pub(crate) avail: ZSet,
    pub(crate) bload: ZSet,
    pub(crate) resv: ZSet,
    pub(crate) rdata: HashMap<String, Resv>,
    pub(crate) leases: ZSet,
    pub(crate) ldata: HashMap<String, LeaseData>,
    pub(crate) bind: HashMap<String, String>,
    pub(crate) bexp: ZSet,
    // `st`: cursors, the fence, counters.
    pub(crate) seq: u64,
    pub(crate) rr: u64,
    pub(crate) vtime: f64,
    pub(crate) fence: u64,
    pub(crate) st: Counters,
    /// `ep:<i>`: slots (and creations in flight) per endpoint.
    pub(crate) per_endpoint: HashMap<u32, i64>,
    /// `bf:<i>`, `bo:<i>`, `bp:<i>`: circuit breakers per endpoint.
    pub(crate) breakers: HashMap<u32, EndpointBreaker>,
    /// `closing`: removed slots no caller was told about yet.
    pub(crate) closing: VecDeque<SlotRecord>,
    /// `nrc`: when an acquire next reclaims on its way in.
    pub(crate) next_reclaim: i64,
    /// `wres`: warm-up creations in flight.
    pub(crate) warm_reservations: i64,
    pub(crate) notify: watch::Sender<u64>,
    /// `cfg.hash`: the digest of the last sync.
    pub(crate) digest: Option<String>,
    /// `cfg.enabled`, `inc`, `hdr`, `eps`: what the pool last converged to.
    pub(crate) identity: Option<PoolIdentity>,
    /// `users`: `s:<u>` client sessions, `i:<u>` leases, `t:<u>` rate-limit arrival time.
    pub(crate) user_sessions: HashMap<String, i64>,
    pub(crate) user_inflight: HashMap<String, i64>,
    pub(crate) user_tat: HashMap<String, f64>,
}

impl Pool {
    pub(crate) fn new() -> Pool {
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
            st: Counters::default(),
            per_endpoint: HashMap::new(),
            breakers: HashMap::new(),
            closing: VecDeque::new(),
            next_reclaim: 0,
            warm_reservations: 0,
            notify: watch::channel(0).0,
            digest: None,
            identity: None,
            user_sessions: HashMap::new(),
            user_inflight: HashMap::new(),
            user_tat: HashMap::new(),
        }
    }

    /// `user_add`: a count that reaches 0 is removed.
    fn user_add(counts: &mut HashMap<String, i64>, user: &str, by: i64) {
        let n = counts.get(user).copied().unwrap_or(0) + by;
        if n <= 0 {
            counts.remove(user);
        } else {
            counts.insert(user.to_owned(), n);
        }
    }

    /// `bind_put`: every binding is written through here (a new client session counts).
    pub(crate) fn bind_put(&mut self, key: &str, value: String) {
        if self.bind.insert(key.to_owned(), value).is_none() {
            if let Some(u) = session_user(key) {
                Self::user_add(&mut self.user_sessions, u, 1);
            }
        }
    }

    /// `bind_del`: every binding is removed through here.
    pub(crate) fn bind_del(&mut self, key: &str) -> Option<String> {
        let old = self.bind.remove(key);
        if old.is_some() {
            if let Some(u) = session_user(key) {
                Self::user_add(&mut self.user_sessions, u, -1);
            }
        }
        old
    }

    /// The slot a live lease is on.
    pub(crate) fn leased_slot(&self, lease_id: &str) -> Option<&SlotRecord> {
        self.slots.get(&self.ldata.get(lease_id)?.slot)
    }

    pub(crate) fn publish(&self) {
        self.notify.send_modify(|v| *v += 1);
    }

    pub(crate) fn total(&self) -> u32 {
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
    pub(crate) fn refresh(&mut self, c: &Cfg, s: &SlotRecord) {
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

    pub(crate) fn delete_slot(&mut self, mut s: SlotRecord) -> SlotRecord {
        self.slots.remove(&s.id);
        self.all.rem(&s.id);
        self.avail.rem(&s.id);
        self.bload.rem(&s.id);
        *self.per_endpoint.entry(s.endpoint).or_default() -= 1;
        self.st.destroys += 1;
        s.state = SlotState::Closed;
        s
    }

    /// `settle`: deletes a slot nothing holds any more, else stores it. True when deleted.
    pub(crate) fn settle(&mut self, c: &Cfg, s: SlotRecord, closed: &mut Vec<SlotRecord>) -> bool {
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

    pub(crate) fn grant(
        &mut self,
        c: &Cfg,
        mut s: SlotRecord,
        lease_id: &str,
        holder: &str,
        now: i64,
        user: &str,
    ) -> (SlotRecord, i64) {
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
        self.ldata.insert(
            lease_id.to_owned(),
            LeaseData {
                slot: s.id.clone(),
                holder: holder.to_owned(),
                user: user.to_owned(),
            },
        );
        if !user.is_empty() {
            Self::user_add(&mut self.user_inflight, user, 1);
        }
        self.st.acquisitions += 1;
        (s, expires)
    }

    pub(crate) fn unbind_key(&mut self, c: &Cfg, key: &str, closed: &mut Vec<SlotRecord>) -> bool {
        let sid = self.bind_del(key);
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

    pub(crate) fn release_lease(
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
        if !ld.user.is_empty() {
            Self::user_add(&mut self.user_inflight, &ld.user, -1);
        }
        if let Some(mut s) = self.slots.get(&ld.slot).cloned() {
            s.leases = s.leases.saturating_sub(1);
            if latency >= 0 {
                let lat = latency as f64;
                s.latency_ewma_ms = if s.latency_ewma_ms == 0.0 {
                    lat
                } else {
                    s.latency_ewma_ms * 0.8 + lat * 0.2
                };
                observe(&mut self.st.hold, latency as u64);
                let per = self.st.endpoint_hold.entry(s.endpoint).or_default();
                per.0 += 1;
                per.1 += latency as u64;
            }
            s.error_rate = s.error_rate * 0.9 + if err { 0.1 } else { 0.0 };
            // A request that went well at this endpoint: its breaker's failures in a row end.
            if !err && latency >= 0 {
                self.breakers.remove(&s.endpoint);
            }
            // `release_lease` in the prelude: under `none` a session is never leased twice.
            if retire || (c.strategy == Strategy::None && s.leases == 0 && s.bindings == 0) {
                s.state = SlotState::Retired;
            }
            self.settle(c, s, closed);
        }
        if err {
            self.st.errors += 1;
        }
        self.st.releases += 1;
        self.publish();
        true
    }

    pub(crate) fn abort_resv(&mut self, id: &str) -> bool {
        self.resv.rem(id);
        let Some(r) = self.rdata.remove(id) else { return false };
        *self.per_endpoint.entry(r.ep).or_default() -= 1;
        if !r.lease {
            self.warm_reservations -= 1;
        }
        if !r.key.is_empty() && self.bind.get(&r.key).is_some_and(|v| *v == format!("{PENDING}{id}")) {
            self.bind_del(&r.key);
            self.bexp.rem(&r.key);
        }
        self.publish();
        true
    }

    /// `push_outbox`.
    pub(crate) fn push_outbox(&mut self, closed: Vec<SlotRecord>) {
        self.closing.extend(closed);
        while self.closing.len() > OUTBOX_MAX {
            self.closing.pop_front();
        }
    }

    pub(crate) fn reclaim(&mut self, c: &Cfg, now: i64, limit: usize, closed: &mut Vec<SlotRecord>) -> (u32, u32, u32) {
        let (mut n_l, mut n_b, mut n_r) = (0, 0, 0);
        for id in self.leases.up_to(now as f64, limit) {
            if self.release_lease(c, &id, -1, false, false, closed) {
                n_l += 1;
                self.st.expired += 1;
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
        // Rate-limit states in the past carry no information (the script sweeps a few per pass).
        self.user_tat.retain(|_, tat| *tat > now as f64);
        (n_l, n_b, n_r)
    }

    pub(crate) fn check_fence(&mut self, token: u64) -> Result<(), u64> {
        if token < self.fence {
            return Err(self.fence);
        }
        self.fence = token;
        Ok(())
    }

    pub(crate) fn lease(&self, lease_id: &str, s: SlotRecord, expires: i64, fresh: bool) -> Lease {
        Lease {
            id: lease_id.to_owned(),
            slot: s,
            expires_ms: expires,
            fresh,
        }
    }

    pub(crate) fn reserve(
        &mut self,
        c: &Cfg,
        lease_id: &str,
        holder: &str,
        key: &str,
        now: i64,
        user: &str,
    ) -> Result<Attempt, ControlError> {
        let total = self.total();
        if total >= c.max {
            return Ok(Attempt::Wait {
                in_use: total,
                limit: c.max,
            });
        }
        let Some(best) = self.pick_endpoint(c, now) else {
            return Err(ControlError::CircuitOpen);
        };
        *self.per_endpoint.entry(best).or_default() += 1;
        self.resv.add(lease_id, (now + c.resv_ttl) as f64);
        self.rdata.insert(
            lease_id.to_owned(),
            Resv {
                ep: best,
                holder: holder.to_owned(),
                key: key.to_owned(),
                lease: true,
                user: user.to_owned(),
            },
        );
        if !key.is_empty() && !self.bind.contains_key(key) {
            self.bind_put(key, format!("{PENDING}{lease_id}"));
            self.bexp.add(key, (now + c.first_ttl(key)) as f64);
        }
        Ok(Attempt::Create(Reservation {
            id: lease_id.to_owned(),
            endpoint: best,
        }))
    }

    /// `pick_endpoint`: the endpoint with the fewest slots (and creations in flight) for its
    /// weight among those whose breaker is not open (a half-open one is re-armed when picked, so
    /// one probe runs at a time); `None` when every breaker is open.
    pub(crate) fn pick_endpoint(&mut self, c: &Cfg, now: i64) -> Option<u32> {
        let mut best = None;
        let mut best_load: Option<f64> = None;
        for (i, w) in c.weights.iter().enumerate() {
            let i = i as u32;
            if self.breakers.get(&i).is_some_and(|b| b.open_until_ms > now) {
                continue;
            }
            let n = self.per_endpoint.get(&i).copied().unwrap_or(0) as f64;
            let load = n / f64::from(*w);
            if best_load.is_none_or(|b| load < b) {
                best = Some(i);
                best_load = Some(load);
            }
        }
        if let Some(b) = best.and_then(|i| self.breakers.get_mut(&i)).filter(|b| b.open_ms > 0) {
            b.open_until_ms = now + b.open_ms;
        }
        best
    }

    /// `breaker.lua`: one outcome at endpoint `ep`.
    pub(crate) fn breaker(&mut self, ep: u32, outcome: EndpointOutcome, breaker: Breaker, now: i64) -> BreakerState {
        if outcome == EndpointOutcome::Ok {
            self.breakers.remove(&ep);
            self.st.create_failures = 0;
            return BreakerState::Closed;
        }
        if outcome == EndpointOutcome::CreateFailed {
            self.st.create_failures += 1;
        }
        let b = self.breakers.entry(ep).or_default();
        b.failures += 1;
        if breaker.threshold > 0 && b.failures >= u64::from(breaker.threshold) {
            b.open_ms = breaker.open.as_millis() as i64;
            b.open_until_ms = now + b.open_ms;
            return BreakerState::Open;
        }
        BreakerState::Closed
    }

    pub(crate) fn bind(&mut self, c: &Cfg, s: &mut SlotRecord, key: &str, now: i64) {
        self.bind_put(key, s.id.clone());
        self.bexp.add(key, (now + c.first_ttl(key)) as f64);
        s.bindings += 1;
    }
}
