//! Scenarios (a)-(h) of the load-test issue. Each one starts the processes it needs (test
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

pub mod measure;
pub mod plot;
pub mod procs;
pub mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::loadgen::dist::{Dist, Mix, Op};
use crate::loadgen::{LoadConfig, Mode};
use measure::{
    idle_sessions_rss, measured_run, prelude_cost, profiled_run, saturated_cost, upstream_stats, Admin, MemoryFigure,
    Run, SaturatedCost, ScriptCost, Utilization,
};
use procs::{node_base, start_node, start_redis, start_upstream, upstream_url, Bins, NodeEnv, Postgres, Proc, Workdir};

pub const ALL: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

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

    fn target(&mut self, name: &str, measured: f64, op: &str, target: f64, unit: &str, baseline: impl Into<String>) {
        let t = Target::new(&self.id, name, measured, op, target, unit, baseline.into());
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
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/src/control/lua")
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
        "a" => scenario_a(ctx, &mut res).await,
        "b" => single_node(ctx, &mut res, false).await,
        "c" => single_node(ctx, &mut res, true).await,
        "d" => scenario_d(ctx, &mut res).await,
        "e" => scenario_e(ctx, &mut res).await,
        "f" => scenario_f(ctx, &mut res).await,
        "g" => scenario_g(ctx, &mut res).await,
        "h" => scenario_h(ctx, &mut res).await,
        other => Err(anyhow::anyhow!("unknown scenario {other:?} (a-h or all)")),
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
           "pool_timeout": timeout})
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

async fn scenario_a(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("a")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let url = upstream_url(&up);
    res.setup = format!(
        "test upstream (no handshake or call latency); echo calls; closed loop {} workers; open loop {} req/s",
        ctx.workers(),
        ctx.latency_rate()
    );
    let c = measured_run(
        &ctx.closed("direct-closed", vec![url.clone()], ctx.workers()),
        &[&up],
        None,
    )
    .await?;
    let o = measured_run(
        &ctx.open("direct-open", vec![url.clone()], ctx.latency_rate(), ctx.workers()),
        &[&up],
        None,
    )
    .await?;
    let c1 = measured_run(&ctx.closed("direct-closed-1", vec![url], 1), &[&up], None).await?;
    res.figure(
        "data-path limit (closed loop)",
        c.result.throughput_rps,
        "req/s",
        format!("{} workers", ctx.workers()),
    );
    res.figure("unloaded p50 (1 worker)", c1.result.latency.p50_ms, "ms", "");
    res.runs.extend([c, o, c1]);
    Ok(())
}

/// (b) embedded and (c) Redis: the same single-node measurements.
async fn single_node(ctx: &mut Ctx, res: &mut ScenarioResult, with_redis: bool) -> anyhow::Result<()> {
    let id = res.id.clone();
    let dir = ctx.work.sub(&id)?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let redis = if with_redis {
        Some(start_redis(&dir, "redis")?)
    } else {
        None
    };
    let env = match &redis {
        Some(r) => NodeEnv {
            database_url: ctx.pg_db(&format!("scenario_{id}"))?,
            redis_url: Some(format!("redis://127.0.0.1:{}", r.port)),
            auth_required: false,
            extra: Vec::new(),
        },
        None => embedded_env(&dir, "node"),
    };
    let node = start_node(&ctx.bins, &dir, "node", &env).await?;
    let admin = Admin::new(&node_base(&node), None)?;
    admin
        .create_server(
            "echo",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "session", 10_000, 1, 10),
        )
        .await?;
    let (direct, gw) = (upstream_url(&up), admin.mcp_url("echo"));
    let mode = if with_redis {
        "distributed (Redis + PostgreSQL)"
    } else {
        "embedded (SQLite, in-process control plane)"
    };
    res.setup = format!(
        "one node, {mode}; test upstream without latency; pool round_robin, session isolation, max 10000; echo calls; closed loop {w} workers, open loop {r} req/s; each gateway run follows a direct run on the same upstream",
        w = ctx.workers(),
        r = ctx.latency_rate()
    );
    let w = ctx.workers();
    let rate = ctx.latency_rate();
    let redis_ref = redis.as_ref();
    let dc = measured_run(&ctx.closed("direct-closed", vec![direct.clone()], w), &[&up], None).await?;
    let nc = measured_run(
        &ctx.closed("node-closed", vec![gw.clone()], w),
        &[&node, &up],
        redis_ref,
    )
    .await?;
    let dopen = measured_run(&ctx.open("direct-open", vec![direct.clone()], rate, w), &[&up], None).await?;
    let nopen = measured_run(
        &ctx.open("node-open", vec![gw.clone()], rate, w),
        &[&node, &up],
        redis_ref,
    )
    .await?;
    // Unloaded: one worker, one request at a time (no queueing anywhere).
    let mut one = ctx.closed("direct-closed-1", vec![direct.clone()], 1);
    one.duration = ctx.secs(8.0, 0.3);
    let d1 = measured_run(&one, &[&up], None).await?;
    one.label = "node-closed-1".into();
    one.urls = vec![gw.clone()];
    let n1 = measured_run(&one, &[&node, &up], redis_ref).await?;
    compare(res, "closed loop", &nc, &dc);
    compare(res, &format!("open loop {rate} req/s"), &nopen, &dopen);
    compare(res, "unloaded (1 worker)", &n1, &d1);
    if with_redis {
        let base = format!(
            "direct to the upstream in the same scenario: {:.0} req/s",
            dc.result.throughput_rps
        );
        res.target(
            "node with Redis: throughput vs direct (session isolation, echo)",
            nc.result.throughput_rps / dc.result.throughput_rps.max(1e-9),
            ">=",
            0.5,
            "x",
            base,
        );
        res.target(
            &format!("node with Redis: p50 added at {rate} req/s (open loop)"),
            nopen.result.latency.p50_ms - dopen.result.latency.p50_ms,
            "<=",
            0.5,
            "ms",
            format!("direct p50 {:.3} ms", dopen.result.latency.p50_ms),
        );
        res.target(
            &format!("node with Redis: p99 added at {rate} req/s (open loop)"),
            nopen.result.latency.p99_ms - dopen.result.latency.p99_ms,
            "<=",
            2.0,
            "ms",
            format!("direct p99 {:.3} ms", dopen.result.latency.p99_ms),
        );
        res.target(
            "node with Redis: p50 added, unloaded (1 worker)",
            n1.result.latency.p50_ms - d1.result.latency.p50_ms,
            "<=",
            0.5,
            "ms",
            format!("direct p50 {:.3} ms", d1.result.latency.p50_ms),
        );
        res.target(
            "node with Redis: p99 added, unloaded (1 worker)",
            n1.result.latency.p99_ms - d1.result.latency.p99_ms,
            "<=",
            2.0,
            "ms",
            format!("direct p99 {:.3} ms", d1.result.latency.p99_ms),
        );
        if let Some(rc) = &nc.redis {
            res.target(
                "Redis round trips per request, session isolation",
                rc.round_trips_per_request,
                "<=",
                1.0,
                "",
                format!("{} round trips / {} requests", rc.round_trips, rc.requests),
            );
        }
    }
    res.runs.extend([dc, nc, dopen, nopen, d1, n1]);
    if let Some(r) = &redis {
        ctx.profile(res, ctx.closed("session", vec![gw.clone()], w), r).await?;
    }

    // Shared isolation: two control-plane calls per request (acquire + release). Twice as many
    // slots as workers: a worker's next acquire can overtake its previous release (released in
    // the background), and waiting for a slot would add calls that are not the steady state.
    admin
        .pool_config("echo", json!({"pool_isolation": "shared", "pool_max_size": 2 * w}))
        .await?;
    ctx.warm(&gw, w).await?;
    let ns = measured_run(
        &ctx.closed("node-closed-shared", vec![gw.clone()], w),
        &[&node, &up],
        redis_ref,
    )
    .await?;
    let dc = res.run("direct-closed").map(|r| r.result.throughput_rps).unwrap_or(0.0);
    res.figure(
        "shared isolation: throughput / direct",
        ns.result.throughput_rps / dc.max(1e-9),
        "x",
        format!("{:.0} vs {:.0} req/s", ns.result.throughput_rps, dc),
    );
    if let Some(rc) = &ns.redis {
        res.target(
            "Redis round trips per request, shared isolation",
            rc.round_trips_per_request,
            "<=",
            2.0,
            "",
            format!("{} round trips / {} requests", rc.round_trips, rc.requests),
        );
        res.target(
            "one Redis shard's ceiling per pool, from this light-load window (shared isolation, 1e6 / script µs per request)",
            rc.ceiling_script_rps,
            ">=",
            50_000.0,
            "req/s",
            format!("{:.2} µs of scripts per request", rc.script_us_per_request),
        );
        res.figure(
            "shard ceiling counting all Redis main-thread CPU (shared isolation)",
            rc.ceiling_cpu_rps,
            "req/s",
            format!("{:.2} µs Redis CPU per request", rc.cpu_us_per_request),
        );
    }
    res.runs.push(ns);
    if let Some(r) = &redis {
        ctx.profile(res, ctx.closed("shared", vec![gw.clone()], w), r).await?;
        // Bounded by the control plane's own call timeout; one retry: on this shared machine a
        // build can stall a call past it. A failure here is reported, not fatal.
        let mut sat = saturated_cost(r.port, ctx.pick(200_000, 2_000), 64).await;
        if sat.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sat = saturated_cost(r.port, ctx.pick(200_000, 2_000), 64).await;
        }
        match sat {
            Err(e) => res
                .notes
                .push(format!("The saturated control-plane measurement failed twice: {e:#}")),
            Ok(sat) => {
                res.target(
                    "one Redis shard's ceiling per pool at saturation (shared isolation: acquire + release back to back, 1e6 / script µs)",
                    sat.ceiling_script_rps,
                    ">=",
                    50_000.0,
                    "req/s",
                    format!(
                        "{:.2} µs of scripts per request; {:.0} pairs/s driven at concurrency {}; counting Redis main-thread CPU {:.2} µs → {:.0} req/s",
                        sat.script_us_per_pair, sat.pairs_per_s, sat.concurrency, sat.cpu_us_per_pair, sat.ceiling_cpu_rps
                    ),
                );
                let (port, lua, n) = (r.port, lua_dir(), ctx.pick(20_000, 2_000));
                let pre = tokio::task::spawn_blocking(move || prelude_cost(port, &lua, n)).await??;
                res.figure(
                    "EVALSHA of `return 1`, hot (pipelined)",
                    pre.bare_us,
                    "µs",
                    format!("{} calls", pre.calls),
                );
                res.figure(
                    "EVALSHA of the prelude + `return 1` with 13 keys, hot (pipelined)",
                    pre.prelude_us,
                    "µs",
                    format!(
                        "every pool script pays this before its own work: 2 x {:.2} = {:.0} % of the {:.2} µs an acquire + release pair costs at saturation",
                        pre.prelude_us,
                        200.0 * pre.prelude_us / sat.script_us_per_pair.max(1e-9),
                        sat.script_us_per_pair
                    ),
                );
                res.saturated = Some(sat);
            }
        }
    }

    // Memory: idle client sessions (shared isolation: no upstream session each), then client
    // sessions each holding a pooled upstream session (session isolation).
    let n = ctx.memory_sessions();
    let limit = ctx.secs(180.0, 30.0);
    let idle = idle_sessions_rss("idle client sessions (shared isolation)", &node, &up, &gw, n, limit).await?;
    admin
        .pool_config("echo", json!({"pool_isolation": "session", "pool_max_size": 10_000}))
        .await?;
    let pooled = idle_sessions_rss(
        "client sessions each bound to a pooled upstream session (session isolation)",
        &node,
        &up,
        &gw,
        n,
        limit,
    )
    .await?;
    let where_ = if with_redis { "with Redis" } else { "embedded" };
    res.target(
        &format!("node RSS per idle client session ({where_})"),
        idle.kib_per_session,
        "<=",
        16.0,
        "KiB",
        format!(
            "RSS {} → {} KiB over {} sessions",
            idle.rss_before_kib, idle.rss_after_kib, idle.sessions
        ),
    );
    res.target(
        &format!("node RSS per pooled upstream session ({where_}, client session included)"),
        pooled.kib_per_session,
        "<=",
        64.0,
        "KiB",
        format!(
            "RSS {} → {} KiB over {} sessions, {} upstream sessions created",
            pooled.rss_before_kib, pooled.rss_after_kib, pooled.sessions, pooled.upstream_sessions
        ),
    );
    if let Some(r) = &redis {
        if let Ok(info) = procs::redis_command(r.port, &["INFO", "memory"]) {
            if let Some(v) = info
                .lines()
                .find_map(|l| l.trim().strip_prefix("used_memory:"))
                .and_then(|v| v.parse::<f64>().ok())
            {
                res.figure("Redis used_memory at the end", v / 1024.0, "KiB", "");
            }
        }
    }
    res.memory.extend([idle, pooled]);
    Ok(())
}

async fn scenario_d(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("d")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let redis = start_redis(&dir, "redis")?;
    let db = ctx.pg_db("scenario_d")?;
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let env = NodeEnv {
            database_url: db.clone(),
            redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
            auth_required: false,
            extra: Vec::new(),
        };
        nodes.push(start_node(&ctx.bins, &dir, &format!("node{i}"), &env).await?);
    }
    let admin = Admin::new(&node_base(&nodes[0]), None)?;
    admin
        .create_server(
            "echo",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "session", 10_000, 1, 10),
        )
        .await?;
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}/servers/echo/mcp", node_base(n)))
        .collect();
    let w = ctx.workers();
    let rate = ctx.latency_rate();
    res.setup = format!(
        "three nodes on one Redis and one PostgreSQL, session isolation; workers and sessions spread round-robin over the nodes; closed loop {w} workers, open loop {rate} req/s; all processes share the machine's cores"
    );
    let mut watched: Vec<&Proc> = nodes.iter().collect();
    watched.push(&up);
    let dc = measured_run(&ctx.closed("direct-closed", vec![upstream_url(&up)], w), &[&up], None).await?;
    let one = measured_run(
        &ctx.closed("node1-only-closed", vec![urls[0].clone()], w),
        &[&nodes[0], &up],
        Some(&redis),
    )
    .await?;
    let fleet = measured_run(&ctx.closed("fleet-closed", urls.clone(), w), &watched, Some(&redis)).await?;
    let dopen = measured_run(&ctx.open("direct-open", vec![upstream_url(&up)], rate, w), &[&up], None).await?;
    let fopen = measured_run(&ctx.open("fleet-open", urls.clone(), rate, w), &watched, Some(&redis)).await?;
    compare(res, "fleet closed loop", &fleet, &dc);
    compare(res, &format!("fleet open loop {rate} req/s"), &fopen, &dopen);
    res.figure(
        "3 nodes / 1 node throughput (same machine)",
        fleet.result.throughput_rps / one.result.throughput_rps.max(1e-9),
        "x",
        format!(
            "{:.0} vs {:.0} req/s; on one 2-core machine the nodes compete for the same cores",
            fleet.result.throughput_rps, one.result.throughput_rps
        ),
    );
    if let Some(rc) = &fleet.redis {
        res.target(
            "Redis round trips per request, session isolation, 3 nodes",
            rc.round_trips_per_request,
            "<=",
            1.0,
            "",
            format!("{} round trips / {} requests", rc.round_trips, rc.requests),
        );
    }
    // Shared isolation on the fleet: the binding case for the shard ceiling.
    // Through every node, so each one drops its cached server definition at once.
    for n in &nodes {
        Admin::new(&node_base(n), None)?
            .pool_config("echo", json!({"pool_isolation": "shared", "pool_max_size": 2 * w}))
            .await?;
    }
    for u in &urls {
        ctx.warm(u, w).await?;
    }
    let fs = measured_run(
        &ctx.closed("fleet-closed-shared", urls.clone(), w),
        &watched,
        Some(&redis),
    )
    .await?;
    if let Some(rc) = &fs.redis {
        res.target(
            "Redis round trips per request, shared isolation, 3 nodes",
            rc.round_trips_per_request,
            "<=",
            2.0,
            "",
            format!("{} round trips / {} requests", rc.round_trips, rc.requests),
        );
        res.target(
            "one Redis shard's ceiling per pool, 3 nodes (shared isolation, 1e6 / script µs per request)",
            rc.ceiling_script_rps,
            ">=",
            50_000.0,
            "req/s",
            format!("{:.2} µs of scripts per request", rc.script_us_per_request),
        );
    }
    res.runs.extend([dc, one, fleet, dopen, fopen, fs]);
    Ok(())
}

async fn scenario_e(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("e")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream-20ms", 20, 0)?;
    let node = start_node(&ctx.bins, &dir, "node", &embedded_env(&dir, "node")).await?;
    let admin = Admin::new(&node_base(&node), None)?;
    let w = ctx.workers();
    // Room for a slot per worker plus one per client session: under `none` the slot each
    // concurrent shared-isolation initialize leases (before the node caches the initialize result)
    // stays idle for good and holds capacity (see the notes).
    let max = 2 * w as u32 + 1;
    admin
        .create_server(
            "pooled",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "shared", max, 1, 30),
        )
        .await?;
    admin
        .create_server("none", &[(upstream_url(&up), 1)], pool("none", "shared", max, 1, 30))
        .await?;
    res.setup = format!(
        "one embedded node; test upstream whose initialize costs 20 ms; shared isolation, max {max} slots of capacity 1; echo calls, closed loop {w} workers; pooled = round_robin over warm sessions, none = a new upstream session per call (what a gateway creating a session per call does); two servers on the same upstream, so neither run inherits the other's sessions"
    );
    res.notes.push(
        "Node finding: under `pool_strategy: none` an idle slot is never leased again and never retired, yet counts toward pool_max_size. Such slots come from shared-isolation `initialize` (each initialize that runs before the node has cached the upstream's initialize result leases a slot and releases it without retiring it: with N clients connecting at once, up to N slots), from warm-up (pool_min_size) and from any slot left when a pool is switched to `none`. With max = workers + 1 this scenario measured 39-42 req/s and p50 258-279 ms for `none` (16 of 17 slots idle and unusable, one reservation at a time); switching a pool that holds pool_max_size idle slots to `none` stalls every request until pool_timeout. The runs here give `none` max = 2 x workers + 1 and a server of its own.".into(),
    );
    let init0 = upstream_stats(&up).await.ok();
    let pooled = measured_run(
        &ctx.closed("pooled-round_robin", vec![admin.mcp_url("pooled")], w),
        &[&node, &up],
        None,
    )
    .await?;
    let init1 = upstream_stats(&up).await.ok();
    let none = measured_run(
        &ctx.closed("strategy-none", vec![admin.mcp_url("none")], w),
        &[&node, &up],
        None,
    )
    .await?;
    let init2 = upstream_stats(&up).await.ok();
    if let Ok(st) = admin.stats("none").await {
        let get = |k: &str| st.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        res.figure(
            "idle slots left in the none pool after its run (never leased, never retired)",
            get("available_sessions"),
            "",
            format!(
                "{} slots in the pool, max {max}; they hold capacity that `none` cannot use",
                get("total_sessions")
            ),
        );
    }
    let inits = |a: &Option<Value>, b: &Option<Value>| {
        let get = |v: &Option<Value>| v.as_ref().and_then(|v| v.get("initializes")?.as_u64()).unwrap_or(0);
        get(b).saturating_sub(get(a))
    };
    res.figure(
        "upstream sessions created per request, pooled (warm-up included)",
        inits(&init0, &init1) as f64 / pooled.result.all_requests.max(1) as f64,
        "",
        format!(
            "{} initializes for {} requests",
            inits(&init0, &init1),
            pooled.result.all_requests
        ),
    );
    res.figure(
        "upstream sessions created per request, none (warm-up included)",
        inits(&init1, &init2) as f64 / none.result.all_requests.max(1) as f64,
        "",
        format!(
            "{} initializes for {} requests",
            inits(&init1, &init2),
            none.result.all_requests
        ),
    );
    let ratio = pooled.result.throughput_rps / none.result.throughput_rps.max(1e-9);
    res.target(
        "pooled vs none at 20 ms handshake: throughput",
        ratio,
        ">=",
        3.0,
        "x",
        format!(
            "pooled {:.0} req/s vs none {:.0} req/s",
            pooled.result.throughput_rps, none.result.throughput_rps
        ),
    );
    let lower = (1.0 - pooled.result.latency.p50_ms / none.result.latency.p50_ms.max(1e-9)) * 100.0;
    res.target(
        "pooled vs none at 20 ms handshake: p50 lower by",
        lower,
        ">=",
        60.0,
        "%",
        format!(
            "pooled p50 {:.3} ms vs none p50 {:.3} ms",
            pooled.result.latency.p50_ms, none.result.latency.p50_ms
        ),
    );
    res.runs.extend([pooled, none]);
    Ok(())
}

async fn scenario_f(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    use poolgate_shared::auth::{Claims, JwtKey};
    let dir = ctx.work.sub("f")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let fast = start_upstream(&ctx.bins, &dir, "upstream-2ms", 0, 2)?;
    let slow = start_upstream(&ctx.bins, &dir, "upstream-6ms", 0, 6)?;
    // Distinct users (sticky binds per user): auth on, one token per client session.
    let mut env = embedded_env(&dir, "node");
    env.auth_required = true;
    let node = start_node(&ctx.bins, &dir, "node", &env).await?;
    let key = JwtKey::new(procs::JWT_SECRET.as_bytes());
    let exp = poolgate_shared::auth::now_unix() + 4 * 3600;
    let mint = |sub: String, roles: Vec<String>| {
        key.mint(&Claims {
            sub,
            exp,
            iat: None,
            nbf: None,
            roles,
            permissions: Vec::new(),
        })
    };
    let admin = Admin::new(
        &node_base(&node),
        Some(mint("loadtests-admin".into(), vec!["admin".into()])),
    )?;
    let (max, cap) = (8u32, 1u32);
    admin
        .create_server(
            "uni",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "shared", max, cap, 30),
        )
        .await?;
    admin
        .create_server(
            "het",
            &[(upstream_url(&fast), 1), (upstream_url(&slow), 1)],
            pool("round_robin", "shared", max, cap, 30),
        )
        .await?;
    let users = ctx.pick(16, 4);
    let tokens: Vec<String> = (0..users).map(|i| mint(format!("user-{i}"), Vec::new())).collect();
    res.setup = format!(
        "one embedded node, auth on with {users} distinct users (sticky binds per user); shared isolation, max {max} slots of capacity {cap}; open loop at about 60 % of the pool's capacity; uniform = slow tool uniform 5-15 ms, heavy = Pareto(scale 3 ms, alpha 1.5) capped at 1 s, hetero = echo on two endpoints (2 ms and 6 ms per call); the pool is reset before each run so per-slot use is that run's"
    );
    let conditions: [(&str, &str, Op, Dist, f64); 3] = [
        ("uniform", "uni", Op::Slow, Dist::Uniform(5.0, 15.0), 480.0),
        ("heavy", "uni", Op::Slow, Dist::Pareto(3.0, 1.5), 530.0),
        ("hetero", "het", Op::Echo, Dist::Fixed(0.0), 1200.0),
    ];
    let strategies = ["round_robin", "least_connections", "sticky", "weighted"];
    for (cond, server, op, dist, rate) in conditions.clone() {
        let url = admin.mcp_url(server);
        for strategy in strategies {
            admin.pool_config(server, json!({"pool_strategy": strategy})).await?;
            admin.reset(server).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let label = format!("{cond}-{strategy}");
            let cfg = LoadConfig {
                label: label.clone(),
                urls: vec![url.clone()],
                tokens: tokens.clone(),
                mode: Mode::Open {
                    rate: ctx.pick(rate, rate / 4.0),
                    sessions: users,
                },
                warmup: ctx.secs(1.0, 0.1),
                duration: ctx.secs(8.0, 0.25),
                mix: Mix::only(op),
                slow: dist.clone(),
                slow_cap_ms: 1000,
                timeout: Duration::from_secs(30),
                ..LoadConfig::default()
            };
            let run = measured_run(&cfg, &[&node, &up, &fast, &slow], None).await?;
            let slots = admin.sessions(server).await?;
            res.utilization.push(Utilization::of(&label, slots));
            res.runs.push(run);
        }
    }
    // p99 against round_robin under the same condition.
    for (cond, ..) in &conditions {
        let base = res
            .run(&format!("{cond}-round_robin"))
            .map(|r| r.result.latency.p99_ms)
            .unwrap_or(0.0);
        for strategy in strategies {
            let label = format!("{cond}-{strategy}");
            let (p99, skew) = (
                res.run(&label).map(|r| r.result.latency.p99_ms).unwrap_or(0.0),
                res.utilization
                    .iter()
                    .find(|u| u.label == label)
                    .map(|u| u.skew_max_over_mean)
                    .unwrap_or(0.0),
            );
            res.figure(
                &format!("{label}: p99 vs round_robin"),
                p99 / base.max(1e-9),
                "x",
                format!("{p99:.3} vs {base:.3} ms; slot skew max/mean {skew:.2}"),
            );
        }
    }
    let sticky_worst = res
        .figures
        .iter()
        .filter(|f| f.name.contains("-sticky:"))
        .map(|f| f.value)
        .fold(0.0f64, f64::max);
    let collapsed: Vec<String> = res
        .runs
        .iter()
        .filter(|r| {
            r.result
                .rate_rps
                .is_some_and(|rate| r.result.throughput_rps < 0.95 * rate)
        })
        .map(|r| {
            let node_cpu = r
                .cpu
                .iter()
                .find(|c| c.process == "node")
                .map_or(0.0, |c| c.us_per_request);
            format!(
                "{} ({:.0} of {:.0} req/s, p99 {:.0} ms, node {:.0} µs CPU per request)",
                r.result.label,
                r.result.throughput_rps,
                r.result.rate_rps.unwrap_or(0.0),
                r.result.latency.p99_ms,
                node_cpu
            )
        })
        .collect();
    if !collapsed.is_empty() {
        res.notes.push(format!(
            "Runs that fell behind an offered load of about 60 % of the pool's capacity: {}. Once requests wait for a slot, every release wakes every waiting acquire on the node and each re-runs the acquire script, so the node's CPU per request climbs with the number of waiters and a transient queue can feed itself; compare the node's CPU per request with the round_robin run of the same condition.",
            collapsed.join("; ")
        ));
    }
    if sticky_worst > 2.0 {
        res.notes.push(format!(
            "sticky's p99 reaches {sticky_worst:.1}x round_robin's: a user's request waits for the slot the user is bound to while it is at capacity, even when other slots are idle (acquire answers W for a busy bound slot; no overflow to another slot). With capacity 1 and two users per slot, one long call (heavy tail) or a slot on the slow endpoint (heterogeneous) queues the other user's requests; with heterogeneous endpoints the queue on slow-endpoint slots grows for the whole run (throughput below the offered rate)."
        ));
    }
    Ok(())
}

async fn scenario_g(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("g")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let node = start_node(&ctx.bins, &dir, "node", &embedded_env(&dir, "node")).await?;
    let admin = Admin::new(&node_base(&node), None)?;
    let (max, call_ms, timeout_s) = (4u32, 20.0, 1u32);
    admin
        .create_server(
            "g",
            &[(upstream_url(&up), 1)],
            pool("least_connections", "shared", max, 1, timeout_s),
        )
        .await?;
    let url = admin.mcp_url("g");
    let capacity = f64::from(max) * 1000.0 / call_ms;
    let (base_rate, burst_rate) = (capacity * 0.5, capacity * 5.0);
    res.setup = format!(
        "one embedded node; shared isolation, max {max} slots of capacity 1, pool_timeout {timeout_s} s; slow tool fixed {call_ms} ms, so the pool serves {capacity:.0} req/s; open loop: baseline {base_rate:.0} req/s, burst {burst_rate:.0} req/s (5x capacity), recovery {base_rate:.0} req/s"
    );
    let phase = |label: &str, rate: f64, secs: f64| LoadConfig {
        label: label.to_owned(),
        urls: vec![url.clone()],
        mode: Mode::Open { rate, sessions: 32 },
        warmup: ctx.secs(1.0, 0.1),
        duration: ctx.secs(secs, 0.6),
        mix: Mix::only(Op::Slow),
        slow: Dist::Fixed(call_ms),
        timeout: Duration::from_secs(15),
        max_in_flight: 20_000,
        ..LoadConfig::default()
    };
    let base = measured_run(&phase("baseline", base_rate, 10.0), &[&node, &up], None).await?;
    let burst = measured_run(&phase("burst", burst_rate, 10.0), &[&node, &up], None).await?;
    let rec = measured_run(&phase("recovery", base_rate, 10.0), &[&node, &up], None).await?;
    let non_503 = burst.result.errors - burst.result.rejected_503;
    res.target(
        "overload: errors other than 503",
        non_503 as f64,
        "<=",
        0.0,
        "",
        format!(
            "{} requests in the burst: {} ok, {} x 503, kinds {:?}",
            burst.result.requests, burst.result.ok, burst.result.rejected_503, burst.result.errors_by_kind
        ),
    );
    res.target(
        "overload: admitted p99 / unloaded p99",
        burst.result.latency.p99_ms / base.result.latency.p99_ms.max(1e-9),
        "<=",
        2.0,
        "x",
        format!(
            "admitted p99 {:.1} ms vs baseline p99 {:.1} ms",
            burst.result.latency.p99_ms, base.result.latency.p99_ms
        ),
    );
    res.target(
        "recovery: p99 after the burst / unloaded p99",
        rec.result.latency.p99_ms / base.result.latency.p99_ms.max(1e-9),
        "<=",
        2.0,
        "x",
        format!(
            "recovery p99 {:.1} ms, {} errors",
            rec.result.latency.p99_ms, rec.result.errors
        ),
    );
    res.target(
        "recovery: errors after the burst",
        rec.result.errors as f64,
        "<=",
        0.0,
        "",
        format!("{} requests", rec.result.requests),
    );
    let limit = base.result.latency.p99_ms * 2.0;
    let recovered_after = rec
        .result
        .timeline
        .iter()
        .find(|p| p.errors == 0 && p.ok > 0 && p.p99_ms <= limit)
        .map(|p| p.t_s as f64);
    res.figure(
        "seconds until a clean second after the burst",
        recovered_after.unwrap_or(f64::NAN),
        "s",
        "first second of the recovery phase with no error and p99 within 2x the baseline (the phase's 1 s warm-up not counted)",
    );
    res.figure(
        "admitted requests in the burst",
        burst.result.throughput_rps,
        "req/s",
        format!("pool capacity {capacity:.0} req/s"),
    );
    let waited = burst.result.latency.p99_ms / (f64::from(timeout_s) * 1000.0);
    res.notes.push(if waited > 0.5 {
        format!(
            "Admitted requests waited for a slot for up to pool_timeout ({timeout_s} s): the admitted p99 ({:.0} ms) is {:.0} % of it. Whichever waiter retries first after a release wins (no queue order); meeting 2x the unloaded p99 needs admission control (fail fast once the wait would exceed a bound, or a short bounded queue). The burst served {:.0} req/s of the pool's {capacity:.0} ({:.0} %).",
            burst.result.latency.p99_ms,
            100.0 * waited,
            burst.result.throughput_rps,
            100.0 * burst.result.throughput_rps / capacity
        )
    } else {
        format!(
            "The node refused the excess at once (503) and kept admitted requests' waits short: admitted p99 {:.0} ms, {:.0} % of pool_timeout ({timeout_s} s), against {:.0} ms unloaded. What remains above the unloaded p99 is the wait in the node's bounded queue. The burst served {:.0} req/s of the pool's {capacity:.0} ({:.0} %).",
            burst.result.latency.p99_ms,
            100.0 * waited,
            base.result.latency.p99_ms,
            burst.result.throughput_rps,
            100.0 * burst.result.throughput_rps / capacity
        )
    });
    if let Ok(stats) = admin.stats("g").await {
        for k in ["leases", "reservations", "total_timeouts", "total_sessions"] {
            if let Some(v) = stats.get(k).and_then(Value::as_f64) {
                res.figure(&format!("pool {k} after the recovery"), v, "", "");
            }
        }
    }
    res.runs.extend([base, burst, rec]);
    Ok(())
}

async fn scenario_h(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("h")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let redis = start_redis(&dir, "redis")?;
    let env = NodeEnv {
        database_url: ctx.pg_db("scenario_h")?,
        redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
        auth_required: false,
        extra: Vec::new(),
    };
    let node = start_node(&ctx.bins, &dir, "node", &env).await?;
    let admin = Admin::new(&node_base(&node), None)?;
    admin
        .create_server(
            "churn",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "session", 2_000, 1, 10),
        )
        .await?;
    let rate = ctx.pick(200.0, 50.0);
    res.setup = format!(
        "one node with Redis, session isolation (each client session binds its own upstream session, retired at DELETE); churn {rate} sessions/s, each initialize + initialized + one echo call + DELETE, open loop"
    );
    let cfg = LoadConfig {
        label: "churn".into(),
        urls: vec![admin.mcp_url("churn")],
        mode: Mode::Churn,
        churn_rate: rate,
        churn_calls: 1,
        warmup: ctx.secs(1.0, 0.1),
        duration: ctx.secs(15.0, 0.6),
        timeout: Duration::from_secs(30),
        ..LoadConfig::default()
    };
    let up0 = upstream_stats(&up).await?;
    let rss0 = node.rss_kib().unwrap_or(0);
    let run = measured_run(&cfg, &[&node, &up], Some(&redis)).await?;
    // Upstream sessions are closed in the background after the DELETE: give them a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss1 = node.rss_kib().unwrap_or(0);
    let up1 = upstream_stats(&up).await?;
    // The same churn again: growth that repeats is state left behind per session, growth that
    // does not is the allocator warming up.
    let mut again = cfg.clone();
    again.label = "churn-again".into();
    let run2 = measured_run(&again, &[&node, &up], Some(&redis)).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss2 = node.rss_kib().unwrap_or(0);
    let per = |a: u64, b: u64, n: u64| (b as f64 - a as f64) * 1024.0 / n.max(1) as f64;
    let second = per(rss1, rss2, run2.result.sessions.opened);
    if second > 32.0 {
        res.notes.push(format!(
            "The node's RSS still grew by {second:.0} bytes per session in the second churn phase (the first phase includes the allocator warming up), although every session was deleted and the pool is empty afterwards. A likely cause: `touched` in node/src/http/mcp/proxy.rs (when each binding key last had its idle TTL refreshed) gets an entry per client session on its first request and loses it only when a touch finds the binding gone, never on DELETE, so a node that serves churning sessions grows without bound."
        ));
    }
    let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let s = &run.result.sessions;
    res.figure(
        "sessions opened / closed",
        s.opened as f64,
        "",
        format!(
            "{} opened, {} closed, {} open failures, {} close failures",
            s.opened, s.closed, s.open_failed, s.close_failed
        ),
    );
    res.figure(
        "upstream sessions created / deleted",
        (get(&up1, "initializes") - get(&up0, "initializes")) as f64,
        "",
        format!(
            "{} created, {} deleted, {} still live at the upstream",
            get(&up1, "initializes") - get(&up0, "initializes"),
            get(&up1, "deletes") - get(&up0, "deletes"),
            get(&up1, "live_sessions")
        ),
    );
    res.figure(
        "session set-up p50",
        s.setup.p50_ms,
        "ms",
        format!("p99 {:.3} ms", s.setup.p99_ms),
    );
    res.figure(
        "DELETE p50",
        s.close.p50_ms,
        "ms",
        format!("p99 {:.3} ms", s.close.p99_ms),
    );
    res.figure(
        "whole lifecycle p99 (from its scheduled start)",
        s.lifecycle.p99_ms,
        "ms",
        format!("p50 {:.3} ms", s.lifecycle.p50_ms),
    );
    res.figure(
        "node RSS growth per churned session, first phase",
        per(rss0, rss1, s.opened),
        "bytes",
        format!("RSS {rss0} → {rss1} KiB over {} sessions", s.opened),
    );
    res.figure(
        "node RSS growth per churned session, second phase",
        per(rss1, rss2, run2.result.sessions.opened),
        "bytes",
        format!(
            "RSS {rss1} → {rss2} KiB over {} more sessions; the same growth in both phases means per-session state is left behind",
            run2.result.sessions.opened
        ),
    );
    if let Some(rc) = &run.redis {
        res.figure(
            "Redis round trips per session lifecycle",
            rc.round_trips_per_request,
            "",
            format!(
                "{} round trips / {} lifecycles: {:?}",
                rc.round_trips, rc.requests, rc.commands
            ),
        );
        res.figure(
            "Redis script µs per session lifecycle",
            rc.script_us_per_request,
            "µs",
            format!("ceiling {:.0} session lifecycles/s per pool", rc.ceiling_script_rps),
        );
    }
    if let Ok(stats) = admin.stats("churn").await {
        for k in ["total_sessions", "bindings", "leases", "reservations"] {
            if let Some(v) = stats.get(k).and_then(Value::as_f64) {
                res.figure(
                    &format!("pool {k} after the run"),
                    v,
                    "",
                    "expected 0: every session was deleted",
                );
            }
        }
    }
    res.runs.extend([run, run2]);
    let mut profile = cfg.clone();
    profile.label = "churn".into();
    ctx.profile(res, profile, &redis).await?;
    Ok(())
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
