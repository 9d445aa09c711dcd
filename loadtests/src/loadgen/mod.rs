//! The fleet load generator: many concurrent MCP client sessions against one or more Streamable
//! HTTP MCP URLs (loopback only), in two modes.
//!
//! - **closed loop** (`Mode::Closed`): N workers, each with its own session, send the next request
//!   when the previous answer arrives. Measures capacity; under overload it slows down with the
//!   server, so it hides queueing (coordinated omission).
//! - **open loop** (`Mode::Open`): requests are scheduled at a fixed arrival rate
//!   (t_i = start + i / rate) whatever the server does, and each latency is measured from its
//!   *scheduled* time, so a stalled server shows up in the percentiles instead of silently lowering
//!   the offered load. The number in flight is bounded (`max_in_flight`); a request that would
//!   exceed it is counted as `client_inflight_limit`, never delayed.
//! - **churn** (`churn_rate`): in the background of either mode (or alone, `Mode::Churn`), new
//!   sessions per second, each doing `churn_calls` echo calls and a DELETE.
//!
//! Every run is bounded by a request count and a duration; a warm-up (not measured) comes first,
//! and an optional hook runs when measurement starts (the scenarios snapshot Redis there).

pub mod client;
pub mod dist;
pub mod stats;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use client::{CallError, McpClient, Session};
use dist::{Dist, Mix, Op, Rng};
use stats::{LoadResult, Recorder};

/// How requests are offered.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// N workers, one session each, back to back.
    Closed { workers: usize },
    /// A fixed arrival rate (requests per second) over `sessions` open sessions.
    Open { rate: f64, sessions: usize },
    /// Only session churn (`churn_rate` lifecycles per second).
    Churn,
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub label: String,
    /// Targets; workers and sessions are spread over them round-robin.
    pub urls: Vec<String>,
    /// Bearer tokens; session i uses token i mod len (distinct users), none when empty.
    pub tokens: Vec<String>,
    pub mode: Mode,
    /// Upper bound on requests sent (warm-up included).
    pub requests: u64,
    /// Measured duration (after the warm-up).
    pub duration: Duration,
    pub warmup: Duration,
    pub mix: Mix,
    pub slow: Dist,
    /// Samples of `slow` are capped here (ms).
    pub slow_cap_ms: u64,
    /// Closed loop: DELETE and re-initialize after this many calls (0 = keep the session).
    pub calls_per_session: u64,
    /// Background session lifecycles per second (0 = none).
    pub churn_rate: f64,
    pub churn_calls: u32,
    pub timeout: Duration,
    pub max_in_flight: usize,
    /// Bytes of text each echo call sends.
    pub echo_bytes: usize,
    pub seed: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            label: "loadgen".into(),
            urls: Vec::new(),
            tokens: Vec::new(),
            mode: Mode::Closed { workers: 16 },
            requests: 1_000_000,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            mix: Mix::only(Op::Echo),
            slow: Dist::Fixed(10.0),
            slow_cap_ms: 2_000,
            calls_per_session: 0,
            churn_rate: 0.0,
            churn_calls: 1,
            timeout: Duration::from_secs(30),
            max_in_flight: 10_000,
            echo_bytes: 32,
            seed: 1,
        }
    }
}

/// Hard limits (every loop stays bounded whatever the flags say).
pub const MAX_WORKERS: usize = 10_000;
pub const MAX_RATE: f64 = 200_000.0;
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);

impl LoadConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("at least one --url is required".into());
        }
        for u in &self.urls {
            client::check_loopback(u)?;
        }
        match self.mode {
            Mode::Closed { workers } if workers == 0 || workers > MAX_WORKERS => {
                return Err(format!("--concurrency must be 1..={MAX_WORKERS}"))
            }
            Mode::Open { rate, sessions } => {
                if !(rate > 0.0 && rate <= MAX_RATE) {
                    return Err(format!("--rate must be in (0, {MAX_RATE}]"));
                }
                if sessions == 0 || sessions > MAX_WORKERS {
                    return Err(format!("--sessions must be 1..={MAX_WORKERS}"));
                }
            }
            Mode::Churn if self.churn_rate <= 0.0 => return Err("churn mode needs --churn-rate > 0".into()),
            _ => {}
        }
        if !(0.0..=MAX_RATE).contains(&self.churn_rate) {
            return Err(format!("--churn-rate must be in [0, {MAX_RATE}]"));
        }
        if self.duration.is_zero() || self.duration + self.warmup > MAX_DURATION {
            return Err("--duration must be > 0 and duration + warm-up <= 1 h".into());
        }
        if self.requests == 0 {
            return Err("--requests must be > 0".into());
        }
        if self.max_in_flight == 0 {
            return Err("--max-in-flight must be > 0".into());
        }
        if self.echo_bytes > 1_000_000 {
            return Err("--echo-bytes must be <= 1000000".into());
        }
        Ok(())
    }

    fn workload(&self) -> String {
        let mut w = format!("mix {}", self.mix);
        if self.mix.to_string().contains("slow") {
            w.push_str(&format!(", slow {} ms (cap {})", self.slow, self.slow_cap_ms));
        }
        if self.calls_per_session > 0 {
            w.push_str(&format!(", new session every {} calls", self.calls_per_session));
        }
        if self.churn_rate > 0.0 {
            w.push_str(&format!(
                ", churn {}/s x {} call(s) + DELETE",
                self.churn_rate, self.churn_calls
            ));
        }
        w
    }
}

/// Awaited once when the measured window starts (after the warm-up).
pub type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Shared {
    cfg: LoadConfig,
    client: McpClient,
    rec: Mutex<Recorder>,
    /// Requests (and churn lifecycles) started, warm-up included: the `requests` bound.
    issued: AtomicU64,
    measure_start: OnceLock<Instant>,
    stop: AtomicBool,
    /// Completion time of the last measured request.
    last_done: Mutex<Option<Instant>>,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Requests completed (or failed), warm-up included.
    all_requests: AtomicU64,
}

impl Shared {
    fn take_ticket(&self) -> bool {
        self.issued.fetch_add(1, Ordering::Relaxed) < self.cfg.requests
    }

    /// The measurement start if `started` falls in the measured window.
    fn measured(&self, started: Instant) -> Option<Instant> {
        self.measure_start.get().copied().filter(|m| started >= *m)
    }

    fn record(&self, op: Op, scheduled: Instant, outcome: Result<(), &CallError>) {
        self.all_requests.fetch_add(1, Ordering::Relaxed);
        let done = Instant::now();
        if let Some(m) = self.measured(scheduled) {
            if let Ok(mut r) = self.rec.lock() {
                r.request(op.name(), done - scheduled, done - m, outcome);
            }
            if let Ok(mut l) = self.last_done.lock() {
                *l = Some(l.map_or(done, |x| x.max(done)));
            }
        }
    }

    /// Opens session number `n` (which picks its URL's token).
    async fn open(&self, url: &str, n: usize) -> Result<Session, CallError> {
        let token = (!self.cfg.tokens.is_empty()).then(|| self.cfg.tokens[n % self.cfg.tokens.len()].as_str());
        let t0 = Instant::now();
        let r = self.client.open(url, token).await;
        if let Ok(mut rec) = self.rec.lock() {
            rec.opened(t0.elapsed(), r.as_ref().map(|_| ()));
        }
        r
    }

    async fn close(&self, s: &Session) {
        let t0 = Instant::now();
        let r = self.client.close(s).await;
        if let Ok(mut rec) = self.rec.lock() {
            rec.closed(t0.elapsed(), r.as_ref().map(|_| ()));
        }
    }

    async fn op(&self, s: &Session, op: Op, rng: &mut Rng) -> Result<(), CallError> {
        match op {
            Op::Echo => {
                let text = "x".repeat(self.cfg.echo_bytes);
                self.client
                    .call_tool(s, "echo", json!({"text": text}))
                    .await
                    .map(|_| ())
            }
            Op::Slow => {
                let ms = self.cfg.slow.sample(rng).min(self.cfg.slow_cap_ms as f64).round() as u64;
                self.client.call_tool(s, "slow", json!({"ms": ms})).await.map(|_| ())
            }
            Op::List => self.client.request(s, "tools/list", json!({})).await.map(|_| ()),
        }
    }

    fn hard_deadline(&self, run_start: Instant) -> Instant {
        run_start + self.cfg.warmup + self.cfg.duration + Duration::from_secs(120)
    }
}

/// Runs the load described by `cfg`; `on_measure` is awaited when the measured window opens.
pub async fn run(cfg: &LoadConfig, on_measure: Option<Hook>) -> Result<LoadResult, String> {
    cfg.validate()?;
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        client: McpClient::new(cfg.timeout)?,
        rec: Mutex::new(Recorder::default()),
        issued: AtomicU64::new(0),
        measure_start: OnceLock::new(),
        stop: AtomicBool::new(false),
        last_done: Mutex::new(None),
        in_flight: AtomicUsize::new(0),
        idle: tokio::sync::Notify::new(),
        all_requests: AtomicU64::new(0),
    });
    let slots = match cfg.mode {
        Mode::Open { sessions, .. } => open_slots(&shared, sessions).await,
        _ => Vec::new(),
    };
    let run_start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    match cfg.mode {
        Mode::Closed { workers } => {
            for w in 0..workers {
                let s = shared.clone();
                tasks.spawn(async move { closed_worker(s, w, run_start).await });
            }
        }
        Mode::Open { rate, .. } => {
            let s = shared.clone();
            tasks.spawn(async move { open_dispatcher(s, rate, slots, run_start).await });
        }
        Mode::Churn => {}
    }
    if cfg.churn_rate > 0.0 {
        let s = shared.clone();
        tasks.spawn(async move { churn_dispatcher(s, run_start).await });
    }

    // Warm-up, hook, then the measured window.
    let boundary = run_start + cfg.warmup;
    tokio::time::sleep_until(boundary.into()).await;
    if let Some(hook) = on_measure {
        hook.await;
    }
    let measure_start = if matches!(cfg.mode, Mode::Closed { .. }) {
        Instant::now()
    } else {
        boundary // open loop and churn: fixed schedule, measured from the boundary
    };
    let _ = shared.measure_start.set(measure_start);
    let stop_at = tokio::time::sleep_until((measure_start + cfg.duration).into());
    tokio::pin!(stop_at);
    let finished = loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break true },
            _ = &mut stop_at => break false,
        }
    };
    if !finished {
        shared.stop.store(true, Ordering::Relaxed);
        let bound = tokio::time::sleep(cfg.timeout + Duration::from_secs(10));
        tokio::pin!(bound);
        loop {
            tokio::select! {
                r = tasks.join_next() => if r.is_none() { break },
                _ = &mut bound => {
                    tasks.abort_all();
                    break;
                }
            }
        }
    }
    // Spawned open-loop/churn requests still in flight: bounded wait.
    let wait_until = Instant::now() + cfg.timeout + Duration::from_secs(5);
    while shared.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < wait_until {
        let _ = tokio::time::timeout(Duration::from_millis(50), shared.idle.notified()).await;
    }

    let end = shared
        .last_done
        .lock()
        .ok()
        .and_then(|l| *l)
        .unwrap_or_else(Instant::now)
        .max(measure_start);
    let elapsed = end.duration_since(measure_start).max(Duration::from_millis(1));
    let mut result = shared
        .rec
        .lock()
        .map_err(|_| "recorder poisoned".to_owned())?
        .finish(elapsed);
    result.label = cfg.label.clone();
    result.all_requests = shared.all_requests.load(Ordering::Relaxed);
    result.targets = cfg.urls.clone();
    result.workload = cfg.workload();
    result.churn_rate = (cfg.churn_rate > 0.0).then_some(cfg.churn_rate);
    match cfg.mode {
        Mode::Closed { workers } => {
            result.mode = "closed".into();
            result.concurrency = Some(workers);
        }
        Mode::Open { rate, sessions } => {
            result.mode = "open".into();
            result.rate_rps = Some(rate);
            result.concurrency = Some(sessions);
        }
        Mode::Churn => result.mode = "churn".into(),
    }
    Ok(result)
}

async fn closed_worker(sh: Arc<Shared>, w: usize, run_start: Instant) {
    let url = sh.cfg.urls[w % sh.cfg.urls.len()].clone();
    let mut rng = Rng::new(sh.cfg.seed.wrapping_add(w as u64 * 7919));
    let hard = sh.hard_deadline(run_start);
    let mut session: Option<Session> = None;
    let mut calls = 0u64;
    let mut backoff = Duration::from_millis(5);
    while !sh.stop.load(Ordering::Relaxed) && Instant::now() < hard {
        let s = match session.take() {
            Some(s) => s,
            None => match sh.open(&url, w).await {
                Ok(s) => {
                    calls = 0;
                    backoff = Duration::from_millis(5);
                    s
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    continue;
                }
            },
        };
        if !sh.take_ticket() {
            session = Some(s);
            break;
        }
        let op = sh.cfg.mix.pick(&mut rng);
        let t0 = Instant::now();
        let r = sh.op(&s, op, &mut rng).await;
        sh.record(op, t0, r.as_ref().map(|_| ()));
        calls += 1;
        if r.as_ref().err().is_some_and(CallError::session_lost) {
            continue; // dropped: re-initialize
        }
        if sh.cfg.calls_per_session > 0 && calls >= sh.cfg.calls_per_session {
            sh.close(&s).await;
            continue;
        }
        session = Some(s);
    }
    if let Some(s) = session {
        sh.close(&s).await;
    }
}

/// Decrements the in-flight count when a spawned request ends (also if it panics or is aborted).
struct InFlight(Arc<Shared>);
impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One open-loop session slot: re-opened lazily after the server lost it.
type Slot = Arc<Mutex<Option<Arc<Session>>>>;

/// Opens the open-loop sessions before the schedule starts, 32 at a time (a failed one is
/// re-opened by its first request).
async fn open_slots(sh: &Arc<Shared>, sessions: usize) -> Vec<Slot> {
    let urls = &sh.cfg.urls;
    let slots: Vec<Slot> = (0..sessions).map(|_| Arc::new(Mutex::new(None))).collect();
    for chunk in (0..sessions).collect::<Vec<_>>().chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let (sh, url, slot) = (sh.clone(), urls[i % urls.len()].clone(), slots[i].clone());
            set.spawn(async move {
                if let Ok(s) = sh.open(&url, i).await {
                    if let Ok(mut g) = slot.lock() {
                        *g = Some(Arc::new(s));
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
    slots
}

async fn open_dispatcher(sh: Arc<Shared>, rate: f64, slots: Vec<Slot>, run_start: Instant) {
    let urls = sh.cfg.urls.clone();
    let sessions = slots.len().max(1);
    let start = run_start;
    let end = run_start + sh.cfg.warmup + sh.cfg.duration;
    let mut rng = Rng::new(sh.cfg.seed);
    let mut i: u64 = 0;
    loop {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        if at >= end || sh.stop.load(Ordering::Relaxed) || !sh.take_ticket() {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let idx = (i % sessions as u64) as usize;
        i += 1;
        if sh.in_flight.load(Ordering::Acquire) >= sh.cfg.max_in_flight {
            if let (Some(m), Ok(mut r)) = (sh.measured(at), sh.rec.lock()) {
                r.not_sent(at - m);
            }
            continue;
        }
        sh.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(sh.clone());
        let (sh, slot, url) = (sh.clone(), slots[idx].clone(), urls[idx % urls.len()].clone());
        let op = sh.cfg.mix.pick(&mut rng);
        let mut req_rng = Rng::new(rng.next_u64());
        tokio::spawn(async move {
            let _guard = guard;
            let current = slot.lock().ok().and_then(|g| g.clone());
            let s = match current {
                Some(s) => s,
                None => match sh.open(&url, idx).await {
                    Ok(s) => {
                        let s = Arc::new(s);
                        if let Ok(mut g) = slot.lock() {
                            *g = Some(s.clone());
                        }
                        s
                    }
                    Err(e) => {
                        sh.record(op, at, Err(&e));
                        return;
                    }
                },
            };
            let r = sh.op(&s, op, &mut req_rng).await;
            sh.record(op, at, r.as_ref().map(|_| ()));
            if r.as_ref().err().is_some_and(CallError::session_lost) {
                if let Ok(mut g) = slot.lock() {
                    if g.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &s)) {
                        *g = None;
                    }
                }
            }
        });
    }
    // Close the sessions once everything in flight has ended (bounded).
    let wait_until = Instant::now() + sh.cfg.timeout + Duration::from_secs(5);
    while sh.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < wait_until {
        let _ = tokio::time::timeout(Duration::from_millis(50), sh.idle.notified()).await;
    }
    for chunk in slots.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for slot in chunk {
            let s = slot.lock().ok().and_then(|mut g| g.take());
            if let Some(s) = s {
                let sh = sh.clone();
                set.spawn(async move { sh.close(&s).await });
            }
        }
        while set.join_next().await.is_some() {}
    }
}

async fn churn_dispatcher(sh: Arc<Shared>, run_start: Instant) {
    let rate = sh.cfg.churn_rate;
    let end = run_start + sh.cfg.warmup + sh.cfg.duration;
    let urls = sh.cfg.urls.clone();
    let mut i: u64 = 0;
    loop {
        let at = run_start + Duration::from_secs_f64(i as f64 / rate);
        if at >= end || sh.stop.load(Ordering::Relaxed) || !sh.take_ticket() {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let url = urls[(i % urls.len() as u64) as usize].clone();
        i += 1;
        if sh.in_flight.load(Ordering::Acquire) >= sh.cfg.max_in_flight {
            if let (Some(m), Ok(mut r)) = (sh.measured(at), sh.rec.lock()) {
                r.not_sent(at - m);
            }
            continue;
        }
        sh.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(sh.clone());
        let sh = sh.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let Ok(s) = sh.open(&url, i as usize).await else {
                return;
            };
            let mut rng = Rng::new(i);
            for _ in 0..sh.cfg.churn_calls {
                let t0 = Instant::now();
                let r = sh.op(&s, Op::Echo, &mut rng).await;
                sh.record(Op::Echo, t0, r.as_ref().map(|_| ()));
                if r.is_err() {
                    break;
                }
            }
            sh.close(&s).await;
            if sh.measured(at).is_some() {
                if let Ok(mut r) = sh.rec.lock() {
                    r.lifecycle(at.elapsed());
                }
            }
        });
    }
}
