//! A seeded discrete-event simulation of one pool under one strategy: the optimizer's model, and
//! the tests' ground truth.
//!
//! Model, matching the control plane's behaviour (`control/lua/acquire.lua`):
//! - `max_size` slots, spread over endpoints in proportion to their weights; each admits
//!   `capacity` concurrent leases. A slot shares its upstream session among its requests
//!   (processor sharing: k requests on a slot each progress at 1/k of the endpoint's speed), which
//!   is what makes the choice of slot matter.
//! - Requests arrive as a Poisson process; their work is log-normal (median and p99 given), ×
//!   the endpoint's slowness. A returning user who lands on another slot than last time pays
//!   `miss_penalty_ms` of extra work (rebuilding upstream state on a stateful server).
//! - No free capacity: requests wait in one FIFO queue; a release hands its capacity to the head;
//!   a request waiting past `pool_timeout` fails (the script's timeout).
//!   Sticky users wait for their own slot when it is full (as the script answers "wait").
//! - Strategies: round_robin (fleet-wide cursor over slots with spare capacity),
//!   least_connections (fewest leases), weighted (smooth weighted round robin over endpoint
//!   weight × 100 / (100 + latency EWMA)), sticky (bounded-load affinity: a new user goes to the
//!   slot with the fewest bindings, never above ceil(1.25 × average)).

use std::collections::{HashMap, VecDeque};

use poolgate_shared::domain::pool::Strategy;

/// What the pool sees, per request and in aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Requests per second.
    pub arrival_per_s: f64,
    /// Work per request at the fastest endpoint, alone on its slot (ms): median and p99.
    pub work_p50_ms: f64,
    pub work_p99_ms: f64,
    /// Per endpoint, how much slower than the fastest (1.0 = as fast); empty = all alike.
    pub endpoint_slowness: Vec<f64>,
    /// Share of requests from users seen before (0..1).
    pub returning_share: f64,
    /// Extra work when a returning user lands on another slot than last time (ms).
    pub miss_penalty_ms: f64,
}

/// Waiting requests looked at per event (sticky: those behind a user waiting for its slot).
const ADMIT_SCAN: usize = 64;

/// The pool's configuration as far as the simulation cares.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub max_size: u32,
    pub capacity: u32,
    /// `pool_timeout` in ms: a request waiting longer fails (and counts at this time).
    pub timeout_ms: f64,
    /// Configured endpoint weights (one per endpoint).
    pub endpoint_weights: Vec<u32>,
}

/// What one simulated run measured.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SimFigures {
    pub requests: u64,
    /// Requests that waited past the pool's timeout (counted in the figures at that time).
    pub timeouts: u64,
    /// End-to-end request time (wait + service) in ms.
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub wait_p99_ms: f64,
    /// Coefficient of variation of busy time across slots.
    pub utilization_skew: f64,
    /// Share of returning users' requests that landed on their previous slot.
    pub affinity_hit_rate: f64,
    /// The optimizer's objective: mean + p99 / 2 (ms); lower is better.
    pub score: f64,
    /// What the pool's snapshots would record: request (hold) time percentiles, slowest over
    /// fastest endpoint mean, returning share and the measured extra time of affinity misses.
    pub hold_p50_ms: f64,
    pub hold_p99_ms: f64,
    pub endpoint_spread: f64,
    pub returning_share: f64,
    pub miss_penalty_ms: f64,
}

/// One finished request.
struct Done {
    total: f64,
    wait: f64,
    hold: f64,
    endpoint: usize,
    /// 0 new user, 1 back on its slot, 2 back on another slot.
    affinity: u8,
}

/// xorshift64*: small, seeded, good enough for a simulation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }
    pub fn normal(&mut self) -> f64 {
        (-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// z of the 99th percentile of the standard normal.
const Z99: f64 = 2.326_347_874;

/// Log-normal parameters (mu, sigma) from a median and a p99.
fn lognormal(p50: f64, p99: f64) -> (f64, f64) {
    let p50 = p50.max(0.001);
    let sigma = ((p99.max(p50) / p50).ln() / Z99).max(0.0);
    (p50.ln(), sigma)
}

struct Slot {
    endpoint: usize,
    slowness: f64,
    /// (request index, remaining work in ms at speed 1).
    active: Vec<(usize, f64)>,
    busy_ms: f64,
    bindings: u32,
    /// Weighted: virtual pass and latency EWMA.
    pass: f64,
    ewma: f64,
}

struct Req {
    arrive: f64,
    start: f64,
    user: u64,
    work: f64,
    affinity: u8,
}

/// Runs `requests` requests of `w` through a pool of shape `shape` under `strategy`.
pub fn simulate(strategy: Strategy, w: &Workload, shape: &Shape, seed: u64, requests: usize) -> SimFigures {
    let mut rng = Rng::new(seed);
    let weights: Vec<u32> = if shape.endpoint_weights.is_empty() {
        vec![1]
    } else {
        shape.endpoint_weights.iter().map(|w| (*w).max(1)).collect()
    };
    let cap = shape.capacity.max(1) as usize;
    let n_slots = shape.max_size.max(1) as usize;
    // Slots per endpoint in proportion to weight (the fewest slots for their weight first).
    let mut per_ep = vec![0u32; weights.len()];
    let mut slots: Vec<Slot> = (0..n_slots)
        .map(|_| {
            let ep = (0..weights.len())
                .min_by(|a, b| {
                    let la = f64::from(per_ep[*a]) / f64::from(weights[*a]);
                    let lb = f64::from(per_ep[*b]) / f64::from(weights[*b]);
                    la.total_cmp(&lb)
                })
                .unwrap_or(0);
            per_ep[ep] += 1;
            Slot {
                endpoint: ep,
                slowness: w.endpoint_slowness.get(ep).copied().unwrap_or(1.0).max(0.01),
                active: Vec::new(),
                busy_ms: 0.0,
                bindings: 0,
                pass: 0.0,
                ewma: 0.0,
            }
        })
        .collect();
    let (mu, sigma) = lognormal(w.work_p50_ms, w.work_p99_ms);
    let mean_gap_ms = 1000.0 / w.arrival_per_s.max(1e-6);

    let mut reqs: Vec<Req> = Vec::with_capacity(requests);
    let mut users_seen: u64 = 0;
    let mut last_slot: HashMap<u64, usize> = HashMap::new();
    let mut bound: HashMap<u64, usize> = HashMap::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut timeouts = 0u64;
    let mut done: Vec<Done> = Vec::with_capacity(requests);
    let (mut returning, mut hits) = (0u64, 0u64);
    let (mut rr_cursor, mut vtime) = (usize::MAX, 0.0f64);
    let mut now = 0.0f64;
    let mut next_arrival = rng.exp(mean_gap_ms);

    // Picks a slot for request `r` (None: wait). Mirrors the strategies of acquire.lua.
    let pick = |slots: &mut Vec<Slot>,
                bound: &mut HashMap<u64, usize>,
                rr_cursor: &mut usize,
                vtime: &mut f64,
                user: u64|
     -> Option<usize> {
        let free = |s: &Slot| s.active.len() < cap;
        match strategy {
            Strategy::Sticky => {
                if let Some(&i) = bound.get(&user) {
                    return free(&slots[i]).then_some(i);
                }
                let i = (0..slots.len()).min_by_key(|i| (slots[*i].bindings, *i))?;
                slots[i].bindings += 1;
                bound.insert(user, i);
                free(&slots[i]).then_some(i)
            }
            Strategy::RoundRobin | Strategy::None => {
                let n = slots.len();
                let start = rr_cursor.wrapping_add(1) % n;
                let i = (0..n).map(|k| (start + k) % n).find(|i| free(&slots[*i]))?;
                *rr_cursor = i;
                Some(i)
            }
            Strategy::LeastConnections => (0..slots.len())
                .filter(|i| free(&slots[*i]))
                .min_by_key(|i| (slots[*i].active.len(), *i)),
            Strategy::Weighted => {
                let i = (0..slots.len())
                    .filter(|i| free(&slots[*i]))
                    .min_by(|a, b| slots[*a].pass.total_cmp(&slots[*b].pass).then(a.cmp(b)))?;
                let s = &mut slots[i];
                if s.pass < *vtime {
                    s.pass = *vtime;
                }
                *vtime = s.pass;
                let eff = (f64::from(weights[s.endpoint]) * 100.0 / (100.0 + s.ewma)).max(0.001);
                s.pass += 1_000_000.0 / eff;
                Some(i)
            }
        }
    };

    while done.len() < requests {
        // Next completion: on each slot, the request with the least remaining work finishes
        // after remaining × k × slowness.
        let completion = slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let k = s.active.len() as f64;
                s.active
                    .iter()
                    .map(|(_, rem)| rem * k * s.slowness)
                    .min_by(f64::total_cmp)
                    .map(|dt| (now + dt, i))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let arrivals_left = reqs.len() < requests;
        let (t, event) = match (completion, arrivals_left) {
            (Some((tc, i)), true) if tc <= next_arrival => (tc, Some(i)),
            (Some((tc, i)), false) => (tc, Some(i)),
            (_, true) => (next_arrival, None),
            (None, false) => break,
        };
        // Advance every slot's work to t.
        let dt = t - now;
        for s in slots.iter_mut() {
            let k = s.active.len() as f64;
            if k > 0.0 {
                s.busy_ms += dt;
                let progress = dt / (k * s.slowness);
                for (_, rem) in s.active.iter_mut() {
                    *rem -= progress;
                }
            }
        }
        now = t;
        match event {
            Some(i) => {
                // Finish every request on slot i whose work is done (ties finish together).
                let slot = &mut slots[i];
                let finished: Vec<usize> = slot
                    .active
                    .iter()
                    .filter(|(_, rem)| *rem <= 1e-9)
                    .map(|(r, _)| *r)
                    .collect();
                slot.active.retain(|(_, rem)| *rem > 1e-9);
                for r in finished {
                    let req = &reqs[r];
                    let latency = now - req.start;
                    slot.ewma = if slot.ewma == 0.0 {
                        latency
                    } else {
                        slot.ewma * 0.8 + latency * 0.2
                    };
                    done.push(Done {
                        total: now - req.arrive,
                        wait: req.start - req.arrive,
                        hold: latency,
                        endpoint: slot.endpoint,
                        affinity: req.affinity,
                    });
                }
            }
            None => {
                let user = if users_seen > 0 && rng.unit() < w.returning_share {
                    rng.below(users_seen)
                } else {
                    users_seen += 1;
                    users_seen - 1
                };
                let work = (mu + sigma * rng.normal()).exp();
                reqs.push(Req {
                    arrive: now,
                    start: now,
                    user,
                    work,
                    affinity: 0,
                });
                queue.push_back(reqs.len() - 1);
                next_arrival = now + rng.exp(mean_gap_ms);
            }
        }
        // Waits past the pool's timeout fail (the oldest are at the front).
        while let Some(&r) = queue.front() {
            if now - reqs[r].arrive < shape.timeout_ms {
                break;
            }
            queue.pop_front();
            timeouts += 1;
            done.push(Done {
                total: shape.timeout_ms,
                wait: shape.timeout_ms,
                hold: 0.0,
                endpoint: 0,
                affinity: 0,
            });
        }
        // Admit waiting requests in FIFO order. Without sticky, a failed pick means every slot is
        // full, so the scan stops; sticky users wait for their own slot, so others behind them
        // may go (the scan is bounded to keep the simulation linear).
        let mut idx = 0;
        while idx < queue.len() && idx < ADMIT_SCAN {
            let r = queue[idx];
            let user = reqs[r].user;
            match pick(&mut slots, &mut bound, &mut rr_cursor, &mut vtime, user) {
                Some(i) => {
                    queue.remove(idx);
                    let mut work = reqs[r].work;
                    if let Some(prev) = last_slot.insert(user, i) {
                        returning += 1;
                        if prev == i {
                            hits += 1;
                            reqs[r].affinity = 1;
                        } else {
                            work += w.miss_penalty_ms;
                            reqs[r].affinity = 2;
                        }
                    }
                    reqs[r].start = now;
                    slots[i].active.push((r, work));
                }
                None if strategy == Strategy::Sticky => idx += 1,
                None => break,
            }
        }
    }
    let mut f = figures(&mut done, &slots, now, returning, hits);
    f.timeouts = timeouts;
    f
}

fn figures(done: &mut [Done], slots: &[Slot], elapsed: f64, returning: u64, hits: u64) -> SimFigures {
    if done.is_empty() {
        return SimFigures::default();
    }
    let n = done.len();
    let at = |q: f64| ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let totals = sorted(done.iter().map(|d| d.total).collect());
    let waits = sorted(done.iter().map(|d| d.wait).collect());
    let holds = sorted(done.iter().map(|d| d.hold).collect());
    let mean = totals.iter().sum::<f64>() / n as f64;
    let busy: Vec<f64> = slots.iter().map(|s| s.busy_ms / elapsed.max(1e-9)).collect();
    let mean_of = |f: &dyn Fn(&Done) -> bool| {
        let (sum, k) = done
            .iter()
            .filter(|d| f(d))
            .fold((0.0, 0usize), |(s, k), d| (s + d.hold, k + 1));
        (k > 0).then(|| sum / k as f64)
    };
    let endpoints = slots.iter().map(|s| s.endpoint).max().unwrap_or(0) + 1;
    let means: Vec<f64> = (0..endpoints)
        .filter_map(|e| mean_of(&|d: &Done| d.endpoint == e))
        .collect();
    let spread = if means.len() >= 2 {
        let (lo, hi) = means
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
        hi / lo.max(1e-9)
    } else {
        1.0
    };
    let penalty = match (
        mean_of(&|d: &Done| d.affinity == 2),
        mean_of(&|d: &Done| d.affinity == 1),
    ) {
        (Some(miss), Some(hit)) => (miss - hit).max(0.0),
        _ => 0.0,
    };
    let (p50, p99) = (totals[at(0.5)], totals[at(0.99)]);
    SimFigures {
        requests: n as u64,
        timeouts: 0,
        mean_ms: mean,
        p50_ms: p50,
        p99_ms: p99,
        wait_p99_ms: waits[at(0.99)],
        utilization_skew: coefficient_of_variation(&busy),
        affinity_hit_rate: if returning == 0 {
            0.0
        } else {
            hits as f64 / returning as f64
        },
        score: mean + p99 / 2.0,
        hold_p50_ms: holds[at(0.5)],
        hold_p99_ms: holds[at(0.99)],
        endpoint_spread: spread,
        returning_share: done.iter().filter(|d| d.affinity > 0).count() as f64 / n as f64,
        miss_penalty_ms: penalty,
    }
}

/// Standard deviation over mean (0 for fewer than two values or a zero mean).
pub fn coefficient_of_variation(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    var.sqrt() / mean
}
