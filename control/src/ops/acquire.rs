//! `acquire`: a lease on a slot with spare capacity, a reservation to create one, or "wait" — after
//! the idempotency checks (I11) and an amortized reclaim pass (I4); the strategies pick here.
//!
//! Script: `lua/acquire.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::redis::reply::*;
use crate::redis::{pool_script, RedisControlPlane};
use crate::*;
use poolgate_shared::domain::server::ServerId;

/// How many expired items of each kind an acquire reclaims on its way (as `acquire.lua`).
const ACQUIRE_RECLAIM_LIMIT: usize = 8;
/// An acquire's reclaim pass runs at most this often per pool unless the pool is out of capacity.
const RECLAIM_EVERY_MS: i64 = 1000;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| pool_script(include_str!("../lua/acquire.lua")));

impl RedisControlPlane {
    pub async fn try_acquire(&self, pool: &ServerId, req: &AcquireRequest) -> Result<Attempt, ControlError> {
        let args = vec![
            Value::from(req.lease_id.as_str()),
            Value::from(req.holder.as_str()),
            Value::from(req.key.as_deref().unwrap_or("")),
            Value::from(req.waited_ms.min(i64::MAX as u64) as i64),
            Value::from(req.user.as_deref().unwrap_or("")),
            Value::from(if req.first { "1" } else { "0" }),
        ];
        let reply = self.eval_pool(&SCRIPT, pool, args).await?;
        match tag(&reply).as_deref() {
            Some("L") => Ok(Attempt::Leased(lease(&reply)?)),
            Some("R") => Ok(Attempt::Create(Reservation {
                id: reply
                    .get(1)
                    .and_then(text)
                    .ok_or_else(|| ControlError::Protocol("reservation id".into()))?,
                endpoint: reply.get(2).and_then(int).unwrap_or(0) as u32,
            })),
            Some("W") => Ok(Attempt::Wait {
                in_use: reply.get(1).and_then(int).unwrap_or(0) as u32,
                limit: reply.get(2).and_then(int).unwrap_or(0) as u32,
            }),
            Some("T") => Err(ControlError::RateLimited {
                retry_after_ms: reply.get(1).and_then(int).unwrap_or(1000).max(1) as u64,
                rate: reply.get(2).and_then(int).unwrap_or(0) as u32,
                burst: reply.get(3).and_then(int).unwrap_or(0) as u32,
            }),
            Some("Q") => Err(ControlError::OverQuota {
                quota: match reply.get(1).and_then(text).as_deref() {
                    Some("sessions") => QuotaKind::Sessions,
                    _ => QuotaKind::Inflight,
                },
                limit: reply.get(2).and_then(int).unwrap_or(0) as u32,
            }),
            Some("E") => Err(script_error(&reply.get(1).and_then(text).unwrap_or_default())),
            _ => Err(unexpected("acquire", &reply)),
        }
    }
}

impl EmbeddedControlPlane {
    pub async fn try_acquire(&self, pool: &ServerId, req: &AcquireRequest) -> Result<Attempt, ControlError> {
        self.with_pool(pool, |p| p.acquire(req))?
    }
}

impl Pool {
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
            if let Some(s) = self.leased_slot(lease_id).cloned() {
                return Ok(Attempt::Leased(self.lease(lease_id, s, exp as i64, false)));
            }
        }
        if let Some(r) = self.rdata.get(lease_id) {
            return Ok(Attempt::Create(Reservation {
                id: lease_id.to_owned(),
                endpoint: r.ep,
            }));
        }
        if let Some(user) = req.user.as_deref().filter(|u| !u.is_empty()) {
            let key = req.key.as_deref().unwrap_or("");
            let mut refused = self.over_quota(&c, user, key);
            if refused.is_some() && !reclaimed {
                // Expired bindings and leases may still be counted: reclaim, then look again.
                self.reclaim_now(&c, now);
                reclaimed = true;
                refused = self.over_quota(&c, user, key);
            }
            if let Some(e) = refused {
                return Err(e);
            }
            if req.first {
                self.rate_check(&c, user, now)?;
            }
        }
        let mut reply = self.choose(&c, req, now)?;
        if matches!(reply, Attempt::Wait { .. }) && !reclaimed {
            self.reclaim_now(&c, now);
            reply = self.choose(&c, req, now)?;
        }
        if !matches!(reply, Attempt::Wait { .. }) {
            observe(&mut self.st.wait, req.waited_ms);
        }
        Ok(reply)
    }

    /// `over_quota` in `acquire.lua`.
    fn over_quota(&self, c: &Cfg, user: &str, key: &str) -> Option<ControlError> {
        if c.qi > 0 && self.user_count(&self.user_inflight, user) >= i64::from(c.qi) {
            return Some(ControlError::OverQuota {
                quota: QuotaKind::Inflight,
                limit: c.qi,
            });
        }
        let new_session = !key.is_empty() && session_user(key).is_some() && !self.bind.contains_key(key);
        if c.qs > 0 && new_session && self.user_count(&self.user_sessions, user) >= i64::from(c.qs) {
            return Some(ControlError::OverQuota {
                quota: QuotaKind::Sessions,
                limit: c.qs,
            });
        }
        None
    }

    fn user_count(&self, counts: &std::collections::HashMap<String, i64>, user: &str) -> i64 {
        counts.get(user).copied().unwrap_or(0)
    }

    /// `rate_check` in the prelude (GCRA).
    fn rate_check(&mut self, c: &Cfg, user: &str, now: i64) -> Result<(), ControlError> {
        if c.rl == 0 {
            return Ok(());
        }
        let t = 1000.0 / f64::from(c.rl);
        let burst = if c.rb > 0 { c.rb } else { c.rl };
        let now = now as f64;
        let tat = self.user_tat.get(user).copied().unwrap_or(0.0).max(now);
        let next = tat + t;
        let tolerance = f64::from(burst) * t;
        if next - now > tolerance {
            return Err(ControlError::RateLimited {
                retry_after_ms: ((next - now - tolerance).ceil() as u64).max(1),
                rate: c.rl,
                burst,
            });
        }
        // Rounded as the script stores it.
        self.user_tat.insert(user.to_owned(), (next * 1000.0).round() / 1000.0);
        Ok(())
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
        let user = req.user.as_deref().unwrap_or("");
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
                self.bind_del(key);
                self.bexp.rem(key);
                bound = None;
            }
            if let Some(sid) = bound {
                let s = self.slots.get(&sid).cloned();
                match s {
                    Some(s) if matches!(s.state, SlotState::Ready | SlotState::Draining) => {
                        self.bexp.add(key, (now + c.idle_ttl) as f64);
                        if s.leases < c.cap {
                            let (s, expires) = self.grant(&c, s, lease_id, holder, now, user);
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
                        self.st.rebinds += 1;
                    }
                }
            }
        }

        if c.strategy == Strategy::None {
            return self.reserve(&c, lease_id, holder, key, now, user);
        }

        if c.iso == Isolation::Session {
            let Some(first) = self.avail.first() else {
                return self.reserve(&c, lease_id, holder, key, now, user);
            };
            let Some(mut s) = self.slots.get(&first).cloned() else {
                return Err(ControlError::Protocol(format!("slot {first} in avail but not stored")));
            };
            if !key.is_empty() {
                s.used = 1;
                self.bind(&c, &mut s, key, now);
            }
            let (s, expires) = self.grant(&c, s, lease_id, holder, now, user);
            return Ok(Attempt::Leased(self.lease(lease_id, s, expires, true)));
        }

        if c.strategy == Strategy::Sticky && !key.is_empty() {
            let pick = self.bload.first().and_then(|id| self.slots.get(&id).cloned());
            if let Some(s) = &pick {
                if s.leases >= c.cap && self.total() < c.max {
                    return self.reserve(&c, lease_id, holder, key, now, user);
                }
            }
            let Some(mut s) = pick else {
                return self.reserve(&c, lease_id, holder, key, now, user);
            };
            self.bind(&c, &mut s, key, now);
            if s.leases < c.cap {
                let (s, expires) = self.grant(&c, s, lease_id, holder, now, user);
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
            return self.reserve(&c, lease_id, holder, key, now, user);
        };
        let Some(s) = self.slots.get(&pick).cloned() else {
            return Err(ControlError::Protocol(format!("slot {pick} in avail but not stored")));
        };
        if c.strategy == Strategy::RoundRobin {
            self.rr = s.seq;
        }
        let (s, expires) = self.grant(&c, s, lease_id, holder, now, user);
        Ok(Attempt::Leased(self.lease(lease_id, s, expires, false)))
    }
}
