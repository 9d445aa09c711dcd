//! What a run measured: HDR histograms (1 µs to 10 min, 3 significant digits) per operation, error
//! counts by kind, and a per-second timeline — merged into a serializable [`LoadResult`].
//!
//! HDR histograms keep every percentile up to p99.9 and the max exact to 0.1 % at a fixed memory
//! cost, so millions of samples cost nothing to keep and nothing is sampled away.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::client::CallError;

const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, 3).expect("constant histogram bounds are valid")
}

fn us(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(LOWEST_US, HIGHEST_US)
}

/// Latency summary in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One second of the measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the measurement started.
    pub t_s: u64,
    pub ok: u64,
    pub errors: u64,
    pub rejected_503: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Client session lifecycle figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionStats {
    pub opened: u64,
    pub open_failed: u64,
    pub closed: u64,
    pub close_failed: u64,
    /// `initialize` + `notifications/initialized`.
    pub setup: Percentiles,
    pub close: Percentiles,
    /// Churn lifecycles: from the scheduled start to the end of the DELETE.
    pub lifecycle: Percentiles,
}

/// The JSON a run produces.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadResult {
    pub label: String,
    pub targets: Vec<String>,
    /// `closed` (N workers), `open` (fixed arrival rate) or `churn` (session lifecycles only).
    pub mode: String,
    pub concurrency: Option<usize>,
    pub rate_rps: Option<f64>,
    pub churn_rate: Option<f64>,
    pub workload: String,
    /// Length of the measured window (after warm-up), seconds.
    pub elapsed_s: f64,
    /// Requests measured (completed or failed).
    pub requests: u64,
    /// Every request of the run, warm-up included (the denominator of whole-run costs).
    pub all_requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// HTTP 503 answers (pool exhausted, overload), also counted in `errors_by_kind`.
    pub rejected_503: u64,
    pub timeouts: u64,
    /// `http_<status>`, `rpc_<code>`, `timeout`, `connect`, `transport`, `protocol`, `tool_error`,
    /// `client_inflight_limit`; session set-up and DELETE failures are prefixed `open:`/`close:`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Successful requests per second over the measured window.
    pub throughput_rps: f64,
    /// Latency of successful requests (open loop: from the scheduled send time).
    pub latency: Percentiles,
    /// Latency of failed requests.
    pub error_latency: Percentiles,
    pub by_op: BTreeMap<String, Percentiles>,
    pub sessions: SessionStats,
    pub timeline: Vec<TimelinePoint>,
}

struct Second {
    ok: u64,
    errors: u64,
    rejected_503: u64,
    hist: Histogram<u64>,
}

/// Collects samples (behind one mutex in the runner: a record is a few hundred nanoseconds).
pub struct Recorder {
    ok: Histogram<u64>,
    err: Histogram<u64>,
    by_op: BTreeMap<&'static str, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    rejected_503: u64,
    timeouts: u64,
    seconds: Vec<Second>,
    setup: Histogram<u64>,
    close: Histogram<u64>,
    lifecycle: Histogram<u64>,
    opened: u64,
    open_failed: u64,
    closed: u64,
    close_failed: u64,
}

/// Timeline length cap (seconds): runs are bounded well below this.
const MAX_SECONDS: usize = 3600;

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            ok: histogram(),
            err: histogram(),
            by_op: BTreeMap::new(),
            errors: BTreeMap::new(),
            rejected_503: 0,
            timeouts: 0,
            seconds: Vec::new(),
            setup: histogram(),
            close: histogram(),
            lifecycle: histogram(),
            opened: 0,
            open_failed: 0,
            closed: 0,
            close_failed: 0,
        }
    }
}

impl Recorder {
    fn second(&mut self, at: Duration) -> Option<&mut Second> {
        let i = at.as_secs() as usize;
        if i >= MAX_SECONDS {
            return None;
        }
        while self.seconds.len() <= i {
            self.seconds.push(Second {
                ok: 0,
                errors: 0,
                rejected_503: 0,
                hist: Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, 2)
                    .expect("constant histogram bounds are valid"),
            });
        }
        self.seconds.get_mut(i)
    }

    /// A request that ended `at` after the measurement start, taking `latency`.
    pub fn request(&mut self, op: &'static str, latency: Duration, at: Duration, outcome: Result<(), &CallError>) {
        let v = us(latency);
        match outcome {
            Ok(()) => {
                let _ = self.ok.record(v);
                let _ = self.by_op.entry(op).or_insert_with(histogram).record(v);
                if let Some(s) = self.second(at) {
                    s.ok += 1;
                    let _ = s.hist.record(v);
                }
            }
            Err(e) => {
                let _ = self.err.record(v);
                self.error_kind(e.kind());
                let is_503 = e.is_503();
                if is_503 {
                    self.rejected_503 += 1;
                }
                if *e == CallError::Timeout {
                    self.timeouts += 1;
                }
                if let Some(s) = self.second(at) {
                    s.errors += 1;
                    if is_503 {
                        s.rejected_503 += 1;
                    }
                }
            }
        }
    }

    /// A request never sent because the client's in-flight bound was reached (open loop).
    pub fn not_sent(&mut self, at: Duration) {
        self.error_kind("client_inflight_limit".into());
        if let Some(s) = self.second(at) {
            s.errors += 1;
        }
    }

    pub fn error_kind(&mut self, kind: String) {
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    pub fn opened(&mut self, latency: Duration, outcome: Result<(), &CallError>) {
        match outcome {
            Ok(()) => {
                self.opened += 1;
                let _ = self.setup.record(us(latency));
            }
            Err(e) => {
                self.open_failed += 1;
                self.error_kind(format!("open:{}", e.kind()));
            }
        }
    }

    pub fn closed(&mut self, latency: Duration, outcome: Result<(), &CallError>) {
        match outcome {
            Ok(()) => {
                self.closed += 1;
                let _ = self.close.record(us(latency));
            }
            Err(e) => {
                self.close_failed += 1;
                self.error_kind(format!("close:{}", e.kind()));
            }
        }
    }

    pub fn lifecycle(&mut self, latency: Duration) {
        let _ = self.lifecycle.record(us(latency));
    }

    /// The result over a measured window of `elapsed`.
    pub fn finish(&self, elapsed: Duration) -> LoadResult {
        let ok = self.ok.len();
        let not_sent = self.errors.get("client_inflight_limit").copied().unwrap_or(0);
        let errors = self.err.len() + not_sent;
        let secs = elapsed.as_secs_f64().max(1e-9);
        LoadResult {
            elapsed_s: elapsed.as_secs_f64(),
            requests: ok + errors,
            ok,
            errors,
            rejected_503: self.rejected_503,
            timeouts: self.timeouts,
            errors_by_kind: self.errors.clone(),
            throughput_rps: ok as f64 / secs,
            latency: Percentiles::of(&self.ok),
            error_latency: Percentiles::of(&self.err),
            by_op: self
                .by_op
                .iter()
                .map(|(k, h)| ((*k).to_owned(), Percentiles::of(h)))
                .collect(),
            sessions: SessionStats {
                opened: self.opened,
                open_failed: self.open_failed,
                closed: self.closed,
                close_failed: self.close_failed,
                setup: Percentiles::of(&self.setup),
                close: Percentiles::of(&self.close),
                lifecycle: Percentiles::of(&self.lifecycle),
            },
            timeline: self
                .seconds
                .iter()
                .enumerate()
                .map(|(i, s)| TimelinePoint {
                    t_s: i as u64,
                    ok: s.ok,
                    errors: s.errors,
                    rejected_503: s.rejected_503,
                    p50_ms: if s.hist.is_empty() {
                        0.0
                    } else {
                        s.hist.value_at_quantile(0.5) as f64 / 1000.0
                    },
                    p99_ms: if s.hist.is_empty() {
                        0.0
                    } else {
                        s.hist.value_at_quantile(0.99) as f64 / 1000.0
                    },
                })
                .collect(),
            ..LoadResult::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_by_kind_and_503_separately() {
        let mut r = Recorder::default();
        let ms = Duration::from_millis;
        for i in 0..100 {
            r.request("echo", ms(i + 1), ms(i * 10), Ok(()));
        }
        r.request("echo", ms(5), ms(100), Err(&CallError::Http(503, Some(-32003))));
        r.request("echo", ms(5), ms(1500), Err(&CallError::Rpc(-32601)));
        r.request("echo", ms(5), ms(1500), Err(&CallError::Timeout));
        r.not_sent(ms(1600));
        let res = r.finish(Duration::from_secs(2));
        assert_eq!(res.ok, 100);
        assert_eq!(res.errors, 4);
        assert_eq!(res.rejected_503, 1);
        assert_eq!(res.timeouts, 1);
        assert_eq!(res.errors_by_kind["http_503"], 1);
        assert_eq!(res.errors_by_kind["rpc_-32601"], 1);
        assert_eq!(res.errors_by_kind["client_inflight_limit"], 1);
        assert!((res.throughput_rps - 50.0).abs() < 1e-9);
        assert!((res.latency.p50_ms - 50.0).abs() < 0.1, "{}", res.latency.p50_ms);
        assert!((res.latency.max_ms - 100.0).abs() < 0.1);
        assert_eq!(res.timeline.len(), 2);
        assert_eq!(res.timeline[0].ok, 100);
        assert_eq!(res.timeline[1].errors, 3);
    }
}
