//! The strategy optimizer: from a pool's snapshot history (`pool_strategy_metrics`) to a
//! recommended strategy, with the reasons and the figures behind them.
//!
//! A pool runs one strategy at a time, so history rarely shows the alternatives side by side.
//! The optimizer therefore *fits a workload* to the recent snapshots — arrival rate, request-time
//! distribution, how much slower the slowest endpoint is, how often users return and what it
//! costs them to land on another upstream session — and runs the seeded pool simulation
//! ([`sim`]) for every candidate strategy on that workload and the pool's shape. The strategy
//! with the lowest score (mean + p99 / 2 of the request time, waits included) wins if it beats
//! the current one by at least [`Settings::margin`]; otherwise the current strategy stays.
//!
//! It is a pure function (no I/O, no clock: `now` is an argument, seeds derive from the pool id),
//! so the same history always gives the same answer on every node.
//!
//! **Hysteresis.** [`Recommendation::apply`] (used when the pool has `pool_auto_optimize`) is
//! true only when the same winner, by the margin, comes out of each of the last
//! [`Settings::confirm`] overlapping windows, the current strategy has run for at least a full
//! window since the last change, and the last change is older than [`Settings::cooldown`]. A
//! workload hovering near a boundary therefore never makes the pool flap.

pub mod sim;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use poolgate_shared::domain::pool::Strategy;
use poolgate_store::StrategySnapshot;

pub use sim::{simulate, Shape, SimFigures, Workload};

/// Strategies the optimizer chooses among (`none` — no reuse — is a policy, not a tuning).
pub const CANDIDATES: [Strategy; 4] = [
    Strategy::RoundRobin,
    Strategy::LeastConnections,
    Strategy::Weighted,
    Strategy::Sticky,
];

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Snapshots (newest first) that make one window.
    pub window: usize,
    /// A window needs at least this many acquisitions to say anything.
    pub min_acquisitions: i64,
    /// Relative score improvement a challenger needs.
    pub margin: f64,
    /// Consecutive windows that must agree before an automatic change.
    pub confirm: usize,
    /// Minimum time between automatic changes.
    pub cooldown: Duration,
    /// Simulated requests per strategy and window.
    pub sim_requests: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            window: 6,
            min_acquisitions: 200,
            margin: 0.10,
            confirm: 3,
            cooldown: Duration::from_secs(3600),
            sim_requests: 6_000,
        }
    }
}

/// What `GET /api/servers/{id}/pool/optimize` answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    pub current: Strategy,
    pub recommended: Strategy,
    /// Whether an automatic change should happen now (hysteresis passed).
    pub apply: bool,
    /// Relative score improvement of `recommended` over `current` (0 when they are the same).
    pub improvement: f64,
    pub reasons: Vec<String>,
    /// The workload fitted to the latest window, if there was enough traffic.
    pub workload: Option<WorkloadView>,
    /// Simulated figures per strategy on that workload.
    pub figures: BTreeMap<String, SimFigures>,
    /// Snapshots the latest window used.
    pub snapshots: usize,
}

/// The fitted workload, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadView {
    pub arrival_per_s: f64,
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
    pub endpoint_slowness: Vec<f64>,
    pub returning_share: f64,
    pub miss_penalty_ms: f64,
}

impl From<&Workload> for WorkloadView {
    fn from(w: &Workload) -> WorkloadView {
        WorkloadView {
            arrival_per_s: w.arrival_per_s,
            request_p50_ms: w.work_p50_ms,
            request_p99_ms: w.work_p99_ms,
            endpoint_slowness: w.endpoint_slowness.clone(),
            returning_share: w.returning_share,
            miss_penalty_ms: w.miss_penalty_ms,
        }
    }
}

/// Fits a workload to snapshots (newest first) of one strategy; `None` without enough traffic.
/// `known_penalty` is the miss penalty measured earlier (under another strategy), used when these
/// rows cannot show it: under sticky, users rarely land elsewhere, so misses are not observed.
pub fn fit(
    rows: &[StrategySnapshot],
    current: Strategy,
    shape: &Shape,
    settings: &Settings,
    known_penalty: Option<f64>,
) -> Option<Workload> {
    let acquisitions: i64 = rows.iter().map(|r| r.acquisitions.max(0)).sum();
    let seconds: i64 = rows.iter().map(|r| i64::from(r.window_seconds.max(0))).sum();
    if acquisitions < settings.min_acquisitions || seconds <= 0 {
        return None;
    }
    // Acquisition-weighted means of the rows' figures.
    let mean = |get: fn(&StrategySnapshot) -> Option<f64>| {
        let (sum, weight) = rows.iter().fold((0.0, 0.0), |(s, w), r| match get(r) {
            Some(v) if v.is_finite() => (s + v * r.acquisitions.max(0) as f64, w + r.acquisitions.max(0) as f64),
            _ => (s, w),
        });
        (weight > 0.0).then(|| sum / weight)
    };
    let hold_p50 = mean(|r| r.hold_p50_ms)?;
    let hold_p99 = mean(|r| r.hold_p99_ms).unwrap_or(hold_p50);
    let returning = mean(|r| r.returning_share).unwrap_or(0.0).clamp(0.0, 1.0);
    let hit_rate = mean(|r| r.affinity_hit_rate).unwrap_or(1.0).clamp(0.0, 1.0);
    let penalty = mean(|r| r.miss_penalty_ms).or(known_penalty).unwrap_or(0.0).max(0.0);
    // Requests that missed paid the penalty: take it out of the observed request time.
    let missed = returning * (1.0 - hit_rate);
    let work_p50 = (hold_p50 - missed * penalty).max(0.5);
    let work_p99 = (hold_p99 - missed * penalty).max(work_p50);
    // One endpoint `spread` times slower than the rest (the slowest is reported, not which).
    let endpoints = shape.endpoint_weights.len().max(1);
    let spread = mean(|r| r.endpoint_spread).unwrap_or(1.0).max(1.0);
    let mut slowness = vec![1.0; endpoints];
    if endpoints > 1 && spread >= 1.2 {
        slowness[endpoints - 1] = spread;
    }
    let mut w = Workload {
        arrival_per_s: acquisitions as f64 / seconds as f64,
        work_p50_ms: work_p50,
        work_p99_ms: work_p99,
        endpoint_slowness: slowness,
        returning_share: returning,
        miss_penalty_ms: penalty,
    };
    // Calibrate: what the rows observed (request times, spread, penalty) includes the current
    // strategy's own effects — requests sharing a session slow each other down. Scale the model's
    // parameters until simulating the current strategy reproduces the observations.
    let observed_penalty = mean(|r| r.miss_penalty_ms);
    for round in 0..CALIBRATION_ROUNDS {
        let f = simulate(current, &w, shape, 0x5eed + round as u64, settings.sim_requests / 2);
        let ratio = |observed: f64, simulated: f64| {
            if simulated > 0.0 && observed > 0.0 {
                (observed / simulated).clamp(0.25, 4.0)
            } else {
                1.0
            }
        };
        w.work_p50_ms = (w.work_p50_ms * ratio(hold_p50, f.hold_p50_ms)).max(0.5);
        w.work_p99_ms = (w.work_p99_ms * ratio(hold_p99, f.hold_p99_ms)).max(w.work_p50_ms);
        if let Some(p) = observed_penalty {
            w.miss_penalty_ms *= ratio(p, f.miss_penalty_ms);
        }
        if endpoints > 1 && spread >= 1.2 {
            let s = (w.endpoint_slowness[endpoints - 1] * ratio(spread, f.endpoint_spread)).max(1.0);
            w.endpoint_slowness[endpoints - 1] = s;
        }
    }
    Some(w)
}

/// Simulations spent fitting the model to what the current strategy observed.
const CALIBRATION_ROUNDS: usize = 3;

/// Simulates every candidate on `w`; seeds derive from `seed`, so results are repeatable.
pub fn compare(w: &Workload, shape: &Shape, seed: u64, requests: usize) -> BTreeMap<String, SimFigures> {
    CANDIDATES
        .iter()
        .map(|s| (s.as_str().to_owned(), simulate(*s, w, shape, seed, requests)))
        .collect()
}

/// The best candidate by score, and its improvement over `current` (by the simulated figures).
fn winner(figures: &BTreeMap<String, SimFigures>, current: Strategy, margin: f64) -> (Strategy, f64) {
    let score = |s: Strategy| figures.get(s.as_str()).map(|f| f.score);
    let Some(base) = score(current) else {
        return (current, 0.0);
    };
    let best = CANDIDATES
        .iter()
        .filter_map(|s| score(*s).map(|v| (*s, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        Some((s, v)) if s != current && base > 0.0 && (base - v) / base >= margin => (s, (base - v) / base),
        _ => (current, 0.0),
    }
}

/// The simulation's view of a server's pool configuration.
pub fn shape_for(server: &poolgate_shared::domain::server::Server) -> Shape {
    Shape {
        max_size: server.pool.pool_max_size,
        capacity: server.pool.pool_session_capacity,
        timeout_ms: f64::from(server.pool.pool_timeout) * 1000.0,
        endpoint_weights: server.endpoints.iter().map(|e| e.weight).collect(),
    }
}

/// Snapshots read for one recommendation (newest first): enough for every window it compares.
pub const HISTORY_ROWS: i64 = 200;

/// Stable seed from a pool id (FNV-1a).
pub fn seed_for(pool: &str) -> u64 {
    pool.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The recommendation for a pool running `current`, from its history (newest first).
pub fn recommend(
    pool: &str,
    history: &[StrategySnapshot],
    current: Strategy,
    shape: &Shape,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Recommendation {
    let mut out = Recommendation {
        current,
        recommended: current,
        apply: false,
        improvement: 0.0,
        reasons: Vec::new(),
        workload: None,
        figures: BTreeMap::new(),
        snapshots: 0,
    };
    if current == Strategy::None {
        out.reasons
            .push("pool_strategy is none (no session reuse): a policy choice the optimizer leaves alone".into());
        return out;
    }
    // Rows since the last strategy change (history is newest first).
    let since_change: Vec<&StrategySnapshot> = history.iter().take_while(|r| r.strategy == current.as_str()).collect();
    let last_change = history.get(since_change.len()).map(|r| r.recorded_at);
    let seed = seed_for(pool);
    let measured: Vec<f64> = history
        .iter()
        .filter_map(|r| r.miss_penalty_ms)
        .take(settings.window)
        .collect();
    let known_penalty = (!measured.is_empty()).then(|| measured.iter().sum::<f64>() / measured.len() as f64);
    let evaluate = |skip: usize| -> Option<(Workload, BTreeMap<String, SimFigures>)> {
        let rows: Vec<StrategySnapshot> = since_change
            .iter()
            .skip(skip)
            .take(settings.window)
            .map(|r| (*r).clone())
            .collect();
        if rows.len() < settings.window.min(since_change.len().max(1)) {
            return None;
        }
        let w = fit(&rows, current, shape, settings, known_penalty)?;
        let figures = compare(&w, shape, seed, settings.sim_requests);
        Some((w, figures))
    };
    let Some((w, figures)) = evaluate(0) else {
        out.reasons.push(format!(
            "not enough traffic under {current}: needs {} acquisitions with request times in the last {} snapshots",
            settings.min_acquisitions, settings.window
        ));
        return out;
    };
    out.snapshots = since_change.len().min(settings.window);
    let (best, improvement) = winner(&figures, current, settings.margin);
    out.recommended = best;
    out.improvement = improvement;
    out.reasons
        .extend(explain(&w, &figures, current, best, settings.margin));
    out.workload = Some(WorkloadView::from(&w));
    out.figures = figures;
    if best == current {
        return out;
    }
    // Hysteresis: older overlapping windows must agree, enough history, cooldown passed.
    if since_change.len() < settings.window + settings.confirm.saturating_sub(1) {
        out.reasons.push(format!(
            "not applied: {} snapshots under {current}, {} needed to confirm",
            since_change.len(),
            settings.window + settings.confirm.saturating_sub(1)
        ));
        return out;
    }
    for skip in 1..settings.confirm {
        let agrees = evaluate(skip).is_some_and(|(_, f)| winner(&f, current, settings.margin).0 == best);
        if !agrees {
            out.reasons
                .push(format!("not applied: window {skip} back does not confirm {best}"));
            return out;
        }
    }
    if let Some(at) = last_change {
        let cooldown = chrono::Duration::from_std(settings.cooldown).unwrap_or(chrono::Duration::MAX);
        if now - at < cooldown {
            out.reasons.push(format!(
                "not applied: the strategy changed at {at}, cooldown {}s",
                settings.cooldown.as_secs()
            ));
            return out;
        }
    }
    out.apply = true;
    out
}

/// Human reasons: what the workload looks like and how the strategies compare.
fn explain(
    w: &Workload,
    figures: &BTreeMap<String, SimFigures>,
    current: Strategy,
    best: Strategy,
    margin: f64,
) -> Vec<String> {
    let mut r = vec![format!(
        "workload: {:.1} req/s, request time p50 {:.1} ms, p99 {:.1} ms (tail ratio {:.1})",
        w.arrival_per_s,
        w.work_p50_ms,
        w.work_p99_ms,
        w.work_p99_ms / w.work_p50_ms.max(0.001)
    )];
    let slowest = w.endpoint_slowness.iter().copied().fold(1.0, f64::max);
    if slowest >= 1.2 {
        r.push(format!("one endpoint is {slowest:.1}x slower than the others"));
    }
    if w.returning_share > 0.0 {
        r.push(format!(
            "{:.0}% of requests come from returning users; landing on another session costs them {:.1} ms",
            w.returning_share * 100.0,
            w.miss_penalty_ms
        ));
    }
    for (name, f) in figures {
        r.push(format!(
            "simulated {name}: mean {:.1} ms, p99 {:.1} ms, wait p99 {:.1} ms, skew {:.2}, timeouts {}, score {:.1}",
            f.mean_ms, f.p99_ms, f.wait_p99_ms, f.utilization_skew, f.timeouts, f.score
        ));
    }
    if best == current {
        r.push(format!(
            "keep {current}: no strategy scores {:.0}% better",
            margin * 100.0
        ));
    } else {
        r.push(format!("switch {current} -> {best}: lowest simulated score"));
    }
    r
}

#[cfg(test)]
mod tests;
