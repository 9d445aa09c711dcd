//! Scenarios (a)-(i) of the load-test issue. Each one starts the processes it needs (test
//! upstreams, poolgate nodes, a private Redis and PostgreSQL), drives them with the load generator,
//! measures around the runs (CPU per request, Redis round trips and CPU, RSS per session, per-slot
//! use) and compares every figure with a baseline measured in the same scenario — so a ratio is
//! never taken between runs made at different times or under different machine load.
//!
//! Why the baselines repeat: on a 2-core machine shared with builds, throughput moves between
//! minutes; a direct-to-upstream baseline right before each gateway run keeps the ratios honest.
//!
//! | id | what |
//! | --- | --- |
//! | a | direct to the test upstream: the data-path limit (closed loop) and latency at a fixed rate (open loop) |
//! | b | one node, embedded (SQLite, in-process control plane), session isolation; RSS per session |
//! | c | one node with Redis + PostgreSQL, session and shared isolation; Redis cost per request; RSS |
//! | d | three nodes, one Redis, clients spread over the nodes; fleet scaling |
//! | e | pooled vs `pool_strategy: none` with a 20 ms upstream handshake |
//! | f | each strategy under uniform and heavy-tailed durations and with heterogeneous endpoints: p99, per-slot skew |
//! | g | overload far past `pool_max_size`: only 503s, admitted p99, recovery |
//! | h | session churn: sessions created and deleted per second; leak checks |
//! | i | one abusive user at 10x capacity beside well-behaved users: their p99 and errors with and without it |

mod a;
mod d;
mod e;
mod f;
mod g;
pub mod goals;
mod h;
mod i;
pub mod measure;
pub mod plot;
pub mod report;
mod single;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::launch::{
    node_base, start_node, start_redis, start_upstream, upstream_url, Bins, NodeEnv, Postgres, Proc, Workdir,
};
use crate::loadgen::dist::{Dist, Mix, Op};
use crate::loadgen::{LoadConfig, Mode};
use measure::{
    idle_sessions_rss, measured_run, prelude_cost, profiled_run, saturated_cost, upstream_stats, Admin, MemoryFigure,
    Run, SaturatedCost, ScriptCost, Utilization,
};

pub const ALL: [&str; 9] = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];

pub fn title(id: &str) -> &'static str {
    match id {
        "a" => "(a) direct to the test upstream",
        "b" => "(b) one node, embedded",
        "c" => "(c) one node with Redis",
        "d" => "(d) three nodes, one Redis",
        "e" => "(e) pooled vs none, 20 ms handshake",
        "f" => "(f) strategies: uniform, heavy-tailed, heterogeneous endpoints",
        "g" => "(g) overload past pool_max_size",
        "h" => "(h) session churn",
        "i" => "(i) one abusive user beside well-behaved users",
        _ => "unknown",
    }
}

/// How the scenarios run.
#[derive(Clone, Debug)]
pub struct Options {
    pub bin_dir: PathBuf,
    pub smoke: bool,
    pub out_dir: PathBuf,
    /// An existing loopback PostgreSQL (e.g. the test suite's); else a private one is started.
    pub pg_url: Option<String>,
    pub keep: bool,
    /// Test upstreams answer as event streams (headers, then each event), as SDK servers do.
    pub sse: bool,
}

/// A figure derived from runs (ratio, difference, count), with what it is compared to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub detail: String,
}

/// A target from the issue, met or missed, with its baseline from the same run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub scenario: String,
    pub measured: f64,
    pub unit: String,
    /// `>=` or `<=`.
    pub op: String,
    pub target: f64,
    pub met: bool,
    pub margin: String,
    pub baseline: String,
}

impl Target {
    fn new(scenario: &str, name: &str, measured: f64, op: &str, target: f64, unit: &str, baseline: String) -> Target {
        let met = if op == ">=" {
            measured >= target
        } else {
            measured <= target
        };
        let diff = measured - target;
        let rel = if target.abs() > 1e-12 {
            format!(" ({:+.0} % of the target)", diff / target * 100.0)
        } else {
            String::new()
        };
        let margin = if met {
            format!("met with {} {unit} to spare{rel}", fmt_val(diff.abs(), unit))
        } else {
            format!("missed by {} {unit}{rel}", fmt_val(diff.abs(), unit))
        };
        Target {
            name: name.to_owned(),
            scenario: scenario.to_owned(),
            measured,
            unit: unit.to_owned(),
            op: op.to_owned(),
            target,
            met,
            margin,
            baseline,
        }
    }
}

/// A target's value: plain counts per request (round trips, error counts) with 4 decimals so a
/// difference of one call in 10,000 shows; anything else as [`fmt_num`].
pub fn fmt_val(v: f64, unit: &str) -> String {
    if unit.is_empty() && v.is_finite() && v.abs() < 1e-4 && v != 0.0 {
        format!("{v:.1e}")
    } else if unit.is_empty() && v.is_finite() && v.abs() < 10.0 && v.fract() != 0.0 {
        format!("{v:.4}")
    } else {
        fmt_num(v)
    }
}

/// A number with sensible precision for the report.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "∞".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Everything one scenario produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub id: String,
    pub title: String,
    pub setup: String,
    pub wall_s: f64,
    /// /proc/loadavg (1, 5, 15 min) when the scenario started: other work on the machine.
    #[serde(default)]
    pub load_avg: String,
    pub runs: Vec<Run>,
    pub figures: Vec<Figure>,
    pub targets: Vec<Target>,
    pub memory: Vec<MemoryFigure>,
    pub utilization: Vec<Utilization>,
    /// Redis time per script (SLOWLOG profiling runs).
    pub scripts: Vec<ScriptCost>,
    /// The control plane's cost with the shard kept busy (the ceiling's regime).
    pub saturated: Option<SaturatedCost>,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

impl ScenarioResult {
    fn figure(&mut self, name: &str, value: f64, unit: &str, detail: impl Into<String>) {
        self.figures.push(Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            detail: detail.into(),
        });
    }

    /// Checks `measured` against `goal`; `baseline` says what it was compared with.
    fn target(&mut self, goal: &goals::Goal, measured: f64, baseline: impl Into<String>) {
        self.target_named(goal.name, goal, measured, baseline.into());
    }

    /// Redis round trips per request of a measured run against `goal`.
    fn target_round_trips(&mut self, goal: &goals::Goal, rc: &measure::RedisCost) {
        let baseline = format!("{} round trips / {} requests", rc.round_trips, rc.requests);
        self.target(goal, rc.round_trips_per_request, baseline);
    }

    /// One shard's ceiling (1e6 / script µs per request) of a measured run against `goal`.
    fn target_ceiling(&mut self, goal: &goals::Goal, rc: &measure::RedisCost) {
        let baseline = format!("{:.2} µs of scripts per request", rc.script_us_per_request);
        self.target(goal, rc.ceiling_script_rps, baseline);
    }

    /// [`Self::target`] for a goal whose name takes the run's parameter.
    fn target_with(&mut self, goal: &goals::Goal, param: &str, measured: f64, baseline: impl Into<String>) {
        self.target_named(&goal.name.replacen("{}", param, 1), goal, measured, baseline.into());
    }

    fn target_named(&mut self, name: &str, goal: &goals::Goal, measured: f64, baseline: String) {
        let t = Target::new(
            &self.id,
            name,
            measured,
            goal.op.symbol(),
            goal.value,
            goal.unit,
            baseline,
        );
        self.targets.push(t);
    }

    pub fn run(&self, label: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.result.label == label)
    }
}

/// Per-invocation state: options, binaries, the work directory, PostgreSQL when needed.
pub struct Ctx {
    pub opts: Options,
    pub bins: Bins,
    pub work: Workdir,
    pg: Option<Postgres>,
}

impl Ctx {
    pub fn new(opts: Options) -> anyhow::Result<Ctx> {
        let bins = Bins {
            dir: opts.bin_dir.clone(),
            sse_upstreams: opts.sse,
        };
        bins.check()?;
        let work = Workdir::new(opts.keep)?;
        Ok(Ctx {
            opts,
            bins,
            work,
            pg: None,
        })
    }

    fn pick<T>(&self, full: T, smoke: T) -> T {
        if self.opts.smoke {
            smoke
        } else {
            full
        }
    }

    fn secs(&self, full: f64, smoke: f64) -> Duration {
        Duration::from_secs_f64(self.pick(full, smoke))
    }

    fn pg_db(&mut self, name: &str) -> anyhow::Result<String> {
        if self.pg.is_none() {
            eprintln!("[scenarios] starting PostgreSQL ...");
            let pg = match &self.opts.pg_url {
                Some(u) => Postgres::external(u)?,
                None => Postgres::start_private(&self.work.path)?,
            };
            self.pg = Some(pg);
        }
        match &self.pg {
            Some(pg) => pg.create_db(name),
            None => bail!("PostgreSQL not available"),
        }
    }

    /// Closed-loop echo load with this profile's sizes.
    fn closed(&self, label: &str, urls: Vec<String>, workers: usize) -> LoadConfig {
        LoadConfig {
            label: label.to_owned(),
            urls,
            mode: Mode::Closed { workers },
            warmup: self.secs(2.0, 0.1),
            duration: self.secs(15.0, 0.5),
            requests: 5_000_000,
            mix: Mix::only(Op::Echo),
            timeout: Duration::from_secs(30),
            ..LoadConfig::default()
        }
    }

    /// Open-loop echo load at `rate` over `sessions` sessions.
    fn open(&self, label: &str, urls: Vec<String>, rate: f64, sessions: usize) -> LoadConfig {
        LoadConfig {
            mode: Mode::Open { rate, sessions },
            ..self.closed(label, urls, 1)
        }
    }

    fn workers(&self) -> usize {
        self.pick(16, 4)
    }

    fn latency_rate(&self) -> f64 {
        self.pick(1000.0, 200.0)
    }

    fn memory_sessions(&self) -> usize {
        self.pick(10_000, 100)
    }

    /// A short unmeasured run so the pool's upstream sessions exist (creating them is counted
    /// apart from the steady state: it happens once per upstream session, not per request).
    async fn warm(&self, url: &str, workers: usize) -> anyhow::Result<()> {
        let mut cfg = self.closed("warm-up", vec![url.to_owned()], workers);
        cfg.warmup = Duration::ZERO;
        cfg.duration = self.secs(0.5, 0.2);
        crate::loadgen::run(&cfg, None).await.map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// A short closed-loop run with Redis logging every command: Redis time per script.
    async fn profile(&self, res: &mut ScenarioResult, mut cfg: LoadConfig, redis: &Proc) -> anyhow::Result<()> {
        cfg.label = format!("{}-profile", cfg.label);
        cfg.warmup = self.secs(0.3, 0.1);
        cfg.duration = self.secs(1.5, 0.3);
        let (_, costs) = profiled_run(&cfg, redis, &lua_dir()).await?;
        res.scripts.extend(costs);
        Ok(())
    }
}

/// The control plane's Lua scripts in this checkout (to name SHAs in Redis profiles).
fn lua_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../control/src/lua")
}

/// Runs one scenario, catching its failure into the result.
pub async fn run_scenario(ctx: &mut Ctx, id: &str) -> ScenarioResult {
    let started = Instant::now();
    eprintln!("[scenarios] {} ...", title(id));
    let mut res = ScenarioResult {
        id: id.to_owned(),
        title: title(id).to_owned(),
        load_avg: report::load_avg(),
        ..ScenarioResult::default()
    };
    let outcome = match id {
        "a" => a::run(ctx, &mut res).await,
        "b" => single::run(ctx, &mut res, false).await,
        "c" => single::run(ctx, &mut res, true).await,
        "d" => d::run(ctx, &mut res).await,
        "e" => e::run(ctx, &mut res).await,
        "f" => f::run(ctx, &mut res).await,
        "g" => g::run(ctx, &mut res).await,
        "h" => h::run(ctx, &mut res).await,
        "i" => i::run(ctx, &mut res).await,
        other => Err(anyhow::anyhow!("unknown scenario {other:?} (a-i or all)")),
    };
    if let Err(e) = outcome {
        eprintln!("[scenarios] {} FAILED: {e:#}", title(id));
        res.error = Some(format!("{e:#}"));
    }
    res.wall_s = started.elapsed().as_secs_f64();
    eprintln!("[scenarios] {} done in {:.1} s", title(id), res.wall_s);
    res
}

fn pool(strategy: &str, isolation: &str, max: u32, capacity: u32, timeout: u32) -> Value {
    json!({"pool_enabled": true, "pool_strategy": strategy, "pool_isolation": isolation,
           "pool_min_size": 0, "pool_max_size": max, "pool_session_capacity": capacity,
           "pool_timeout": timeout,
           // The scenarios measure one tenant's throughput: no per-user share.
           "pool_max_sessions_per_user": 0, "pool_max_inflight_per_user": 0})
}

fn embedded_env(dir: &std::path::Path, name: &str) -> NodeEnv {
    NodeEnv {
        database_url: format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        redis_url: None,
        auth_required: false,
        extra: Vec::new(),
    }
}

/// Compares a gateway run with its direct baseline: throughput ratio, added p50/p99.
fn compare(res: &mut ScenarioResult, what: &str, run: &Run, base: &Run) {
    let (r, b) = (&run.result, &base.result);
    let ratio = r.throughput_rps / b.throughput_rps.max(1e-9);
    res.figure(
        &format!("{what}: throughput / direct"),
        ratio,
        "x",
        format!(
            "{:.0} vs {:.0} req/s ({} vs {})",
            r.throughput_rps, b.throughput_rps, r.label, b.label
        ),
    );
    res.figure(
        &format!("{what}: p50 added"),
        r.latency.p50_ms - b.latency.p50_ms,
        "ms",
        format!("{:.3} vs {:.3} ms", r.latency.p50_ms, b.latency.p50_ms),
    );
    res.figure(
        &format!("{what}: p99 added"),
        r.latency.p99_ms - b.latency.p99_ms,
        "ms",
        format!("{:.3} vs {:.3} ms", r.latency.p99_ms, b.latency.p99_ms),
    );
}

/// The results directory of a run: `<out>/<timestamp>[-smoke]`.
pub fn run_dir(opts: &Options) -> anyhow::Result<(String, PathBuf)> {
    let mut name = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    if opts.smoke {
        name.push_str("-smoke");
    }
    let dir = opts.out_dir.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((name, dir))
}
