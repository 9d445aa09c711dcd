//! Measuring around a load run: the node's admin API (register servers, configure and reset
//! pools, per-slot use), Redis `INFO commandstats`/`INFO cpu` deltas turned into round trips and
//! CPU per request, per-process CPU time per request, and RSS growth per open session.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::launch::{cpu_us, redis_call, redis_command, redis_pipeline, Proc, Resp};
use crate::loadgen::client::{McpClient, Session};
use crate::loadgen::stats::LoadResult;
use crate::loadgen::{self, LoadConfig};

/// The node's admin REST API.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Admin {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Admin> {
        Ok(Admin {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()?,
            base: base.to_owned(),
            token,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Registers a server with endpoints (url, weight) and pool fields.
    pub async fn create_server(&self, id: &str, endpoints: &[(String, u32)], pool: Value) -> anyhow::Result<()> {
        let eps: Vec<Value> = endpoints.iter().map(|(u, w)| json!({"url": u, "weight": w})).collect();
        let mut body = json!({"id": id, "name": id, "endpoints": eps});
        if let (Some(b), Some(p)) = (body.as_object_mut(), pool.as_object()) {
            for (k, v) in p {
                b.insert(k.clone(), v.clone());
            }
        }
        self.call(reqwest::Method::POST, "/api/servers", Some(body)).await?;
        Ok(())
    }

    pub async fn pool_config(&self, id: &str, patch: Value) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::PUT,
            &format!("/api/servers/{id}/pool/config"),
            Some(patch),
        )
        .await
    }

    pub async fn reset(&self, id: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, &format!("/api/servers/{id}/pool/reset"), None)
            .await
    }

    pub async fn stats(&self, id: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, &format!("/api/servers/{id}/pool/stats"), None)
            .await
    }

    pub async fn sessions(&self, id: &str) -> anyhow::Result<Vec<SlotUse>> {
        let v = self
            .call(reqwest::Method::GET, &format!("/api/servers/{id}/pool/sessions"), None)
            .await?;
        let list = v.get("sessions").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(list
            .iter()
            .map(|s| SlotUse {
                slot_id: s.get("slot_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                endpoint: s.get("endpoint").and_then(Value::as_str).unwrap_or_default().to_owned(),
                state: s.get("state").and_then(Value::as_str).unwrap_or_default().to_owned(),
                uses: s.get("reuse_count").and_then(Value::as_u64).unwrap_or(0),
            })
            .collect())
    }

    pub fn mcp_url(&self, server: &str) -> String {
        format!("{}/servers/{server}/mcp", self.base)
    }
}

/// The test upstream's `/stats` (initializes, deletes, tool calls, live sessions).
pub async fn upstream_stats(p: &Proc) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    Ok(http
        .get(format!("http://127.0.0.1:{}/stats", p.port))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .json()
        .await?)
}

/// One upstream session (slot) of a pool and how often it was leased.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SlotUse {
    pub slot_id: String,
    pub endpoint: String,
    pub state: String,
    pub uses: u64,
}

/// How evenly a run used the pool's slots.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Utilization {
    pub label: String,
    pub slots: Vec<SlotUse>,
    /// max / mean leases per slot (1.0 = perfectly even).
    pub skew_max_over_mean: f64,
    /// Coefficient of variation of leases per slot.
    pub cv: f64,
    /// Share of leases per endpoint URL.
    pub endpoint_share: BTreeMap<String, f64>,
}

impl Utilization {
    pub fn of(label: &str, mut slots: Vec<SlotUse>) -> Utilization {
        slots.sort_by(|a, b| b.uses.cmp(&a.uses).then(a.slot_id.cmp(&b.slot_id)));
        let n = slots.len().max(1) as f64;
        let total: u64 = slots.iter().map(|s| s.uses).sum();
        let mean = total as f64 / n;
        let max = slots.iter().map(|s| s.uses).max().unwrap_or(0) as f64;
        let var = slots.iter().map(|s| (s.uses as f64 - mean).powi(2)).sum::<f64>() / n;
        let mut share = BTreeMap::new();
        for s in &slots {
            *share.entry(s.endpoint.clone()).or_insert(0.0) += s.uses as f64 / (total.max(1) as f64);
        }
        Utilization {
            label: label.to_owned(),
            skew_max_over_mean: if mean > 0.0 { max / mean } else { 0.0 },
            cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
            endpoint_share: share,
            slots,
        }
    }
}

/// Redis counters at one instant.
#[derive(Clone, Debug, Default)]
pub struct RedisSnap {
    /// command → (calls, usec)
    pub cmds: BTreeMap<String, (u64, u64)>,
    /// Main-thread CPU (user + sys), µs.
    pub cpu_us: u64,
}

/// Commands a client sends itself (everything else in `commandstats` ran inside a script), minus
/// the ones the scenario sends to read the counters.
fn is_round_trip(cmd: &str) -> bool {
    cmd.starts_with("eval")
        || cmd.starts_with("fcall")
        || cmd.starts_with("script")
        || cmd.contains("subscribe")
        || cmd == "ping"
        || cmd == "hello"
        || cmd.starts_with("client")
}

pub fn redis_snapshot(port: u16) -> anyhow::Result<RedisSnap> {
    let stats = redis_command(port, &["INFO", "commandstats"])?;
    let cpu = redis_command(port, &["INFO", "cpu"])?;
    let mut snap = RedisSnap::default();
    for line in stats.lines() {
        // cmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,rejected_calls=0,failed_calls=0
        let Some((name, fields)) = line.trim().strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let field = |k: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        snap.cmds.insert(name.to_owned(), (field("calls"), field("usec")));
    }
    let mut main = 0.0;
    let mut all = 0.0;
    for line in cpu.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let v: f64 = v.parse().unwrap_or(0.0);
        match k {
            "used_cpu_user_main_thread" | "used_cpu_sys_main_thread" => main += v,
            "used_cpu_user" | "used_cpu_sys" => all += v,
            _ => {}
        }
    }
    snap.cpu_us = ((if main > 0.0 { main } else { all }) * 1e6) as u64;
    Ok(snap)
}

/// The control plane's cost per proxied request over a measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RedisCost {
    /// Every request of the run (warm-up included): the window is the whole run.
    pub requests: u64,
    /// Client-issued commands (EVALSHA, ...) in the window.
    pub round_trips: u64,
    pub round_trips_per_request: f64,
    pub evalsha_calls: u64,
    pub evalsha_usec: u64,
    /// Script execution time per request (commandstats usec of EVALSHA/EVAL).
    pub script_us_per_request: f64,
    /// Redis main-thread CPU (user + sys: parsing, networking, scripts) per request.
    pub cpu_us_per_request: f64,
    /// 1e6 / script_us_per_request: one shard's (one pool's) ceiling counting script time only.
    pub ceiling_script_rps: f64,
    /// 1e6 / cpu_us_per_request: the same counting all of Redis' main-thread CPU.
    pub ceiling_cpu_rps: f64,
    /// Calls per command in the window (client-issued and inside scripts).
    pub commands: BTreeMap<String, u64>,
}

impl RedisCost {
    pub fn between(before: &RedisSnap, after: &RedisSnap, requests: u64) -> RedisCost {
        let mut commands = BTreeMap::new();
        let (mut rt, mut ev_calls, mut ev_usec) = (0, 0, 0);
        for (name, (calls, usec)) in &after.cmds {
            let (c0, u0) = before.cmds.get(name).copied().unwrap_or((0, 0));
            let (dc, du) = (calls.saturating_sub(c0), usec.saturating_sub(u0));
            if dc == 0 || name == "info" || name.starts_with("config") {
                continue;
            }
            commands.insert(name.clone(), dc);
            if is_round_trip(name) {
                rt += dc;
            }
            if name.starts_with("eval") {
                ev_calls += dc;
                ev_usec += du;
            }
        }
        let req = requests.max(1) as f64;
        let script = ev_usec as f64 / req;
        let cpu = after.cpu_us.saturating_sub(before.cpu_us) as f64 / req;
        RedisCost {
            requests,
            round_trips: rt,
            round_trips_per_request: rt as f64 / req,
            evalsha_calls: ev_calls,
            evalsha_usec: ev_usec,
            script_us_per_request: script,
            cpu_us_per_request: cpu,
            ceiling_script_rps: if script > 0.0 { 1e6 / script } else { f64::INFINITY },
            ceiling_cpu_rps: if cpu > 0.0 { 1e6 / cpu } else { f64::INFINITY },
            commands,
        }
    }
}

/// CPU one process spent per measured request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcCpu {
    pub process: String,
    pub cpu_ms: f64,
    pub us_per_request: f64,
    /// Share of one core over the window.
    pub cores: f64,
}

/// One load run with what was measured around it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Run {
    pub result: LoadResult,
    pub cpu: Vec<ProcCpu>,
    pub redis: Option<RedisCost>,
}

#[derive(Default)]
struct Snap {
    cpu: Vec<(String, u64)>,
    at: Option<Instant>,
}

fn take_snap(procs: &[(String, u32)]) -> Snap {
    Snap {
        cpu: procs
            .iter()
            .filter_map(|(n, pid)| Some((n.clone(), cpu_us(*pid)?)))
            .collect(),
        at: Some(Instant::now()),
    }
}

/// Runs `cfg`, reading CPU times when the measured window opens and after it. Redis counters
/// are read before the run and after it — no traffic is in flight at either instant — and
/// divided by every request of the run (warm-up included), so session set-up and teardown are
/// amortized and no request straddles the window.
pub async fn measured_run(cfg: &LoadConfig, procs: &[&Proc], redis: Option<&Proc>) -> anyhow::Result<Run> {
    let mut watched: Vec<(String, u32)> = procs.iter().map(|p| (p.name.clone(), p.pid())).collect();
    watched.push(("loadgen".into(), std::process::id()));
    let redis_port = redis.map(|r| r.port);
    if let Some(r) = redis {
        watched.push((r.name.clone(), r.pid()));
    }
    let redis_before = match redis_port {
        Some(p) => Some(tokio::task::spawn_blocking(move || redis_snapshot(p)).await??),
        None => None,
    };
    let start = Arc::new(Mutex::new(Snap::default()));
    let hook = {
        let (start, watched) = (start.clone(), watched.clone());
        Box::pin(async move {
            let snap = tokio::task::spawn_blocking(move || take_snap(&watched))
                .await
                .unwrap_or_default();
            if let Ok(mut s) = start.lock() {
                *s = snap;
            }
        })
    };
    eprintln!("[scenarios]   run {} ...", cfg.label);
    let result = loadgen::run(cfg, Some(hook)).await.map_err(anyhow::Error::msg)?;
    let end = tokio::task::spawn_blocking(move || take_snap(&watched)).await?;
    let redis_after = match redis_port {
        Some(p) => Some(tokio::task::spawn_blocking(move || redis_snapshot(p)).await??),
        None => None,
    };
    let begin = std::mem::take(&mut *start.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let window = match (begin.at, end.at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(1e-3),
        _ => result.elapsed_s.max(1e-3),
    };
    let req = result.requests.max(1) as f64;
    let cpu = end
        .cpu
        .iter()
        .filter_map(|(name, after)| {
            let before = begin.cpu.iter().find(|(n, _)| n == name)?.1;
            let us = after.saturating_sub(before) as f64;
            Some(ProcCpu {
                process: name.clone(),
                cpu_ms: us / 1000.0,
                us_per_request: us / req,
                cores: us / 1e6 / window,
            })
        })
        .collect();
    let redis = match (&redis_before, &redis_after) {
        (Some(b), Some(a)) => Some(RedisCost::between(b, a, result.all_requests)),
        _ => None,
    };
    eprintln!(
        "[scenarios]     {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, errors {} ({} x 503)",
        result.throughput_rps, result.latency.p50_ms, result.latency.p99_ms, result.errors, result.rejected_503
    );
    Ok(Run { result, cpu, redis })
}

/// Redis time per script, from `SLOWLOG` with every command logged during a profiling run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScriptCost {
    pub run: String,
    pub script: String,
    /// Calls in the sample (the newest SLOWLOG entries).
    pub calls: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// SHA1 → script name, by loading each `lua/*.lua` the way the node composes it (the prelude,
/// a newline, the script; `leader.lua` alone) with `SCRIPT LOAD` — the same text gives the same
/// SHA, and loading a script twice changes nothing.
pub fn script_names(port: u16, lua_dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let Ok(prelude) = std::fs::read_to_string(lua_dir.join("prelude.lua")) else {
        return names;
    };
    let Ok(dir) = std::fs::read_dir(lua_dir) else {
        return names;
    };
    for entry in dir.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".lua") else {
            continue;
        };
        if name == "prelude" {
            continue;
        }
        let Ok(body) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let text = if name == "leader" {
            body
        } else {
            format!("{prelude}\n{body}")
        };
        if let Ok(sha) = redis_command(port, &["SCRIPT", "LOAD", &text]) {
            names.insert(sha, name.to_owned());
        }
    }
    names
}

/// The largest SLOWLOG kept during a profiling run. Redis logs the commands scripts run as well
/// (about ten per pool script), so this keeps the newest couple of thousand script calls: a
/// sample for per-call times, not a count.
const SLOWLOG_MAX: usize = 30_000;

/// Runs `cfg` with Redis logging every command's duration, then groups EVALSHA calls by script.
/// A separate run: logging every command costs Redis time itself.
pub async fn profiled_run(
    cfg: &LoadConfig,
    redis: &Proc,
    lua_dir: &std::path::Path,
) -> anyhow::Result<(LoadResult, Vec<ScriptCost>)> {
    let port = redis.port;
    let lua = lua_dir.to_path_buf();
    let names = tokio::task::spawn_blocking(move || -> anyhow::Result<BTreeMap<String, String>> {
        let names = script_names(port, &lua);
        redis_command(port, &["CONFIG", "SET", "slowlog-max-len", &SLOWLOG_MAX.to_string()])?;
        redis_command(port, &["CONFIG", "SET", "slowlog-log-slower-than", "0"])?;
        redis_command(port, &["SLOWLOG", "RESET"])?;
        Ok(names)
    })
    .await??;
    eprintln!("[scenarios]   profile {} (SLOWLOG of every command) ...", cfg.label);
    let result = loadgen::run(cfg, None).await.map_err(anyhow::Error::msg);
    let log = tokio::task::spawn_blocking(move || -> anyhow::Result<Resp> {
        redis_command(port, &["CONFIG", "SET", "slowlog-log-slower-than", "10000"])?;
        let log = redis_call(port, &["SLOWLOG", "GET", &SLOWLOG_MAX.to_string()])?;
        redis_command(port, &["SLOWLOG", "RESET"])?;
        redis_command(port, &["CONFIG", "SET", "slowlog-max-len", "128"])?;
        Ok(log)
    })
    .await??;
    let result = result?;
    let mut by_script: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    if let Resp::Array(entries) = log {
        for e in entries {
            let Resp::Array(fields) = e else { continue };
            let (Some(Resp::Int(us)), Some(Resp::Array(args))) = (fields.get(2), fields.get(3)) else {
                continue;
            };
            let cmd = args.first().map(Resp::text).unwrap_or_default().to_ascii_lowercase();
            if cmd != "evalsha" {
                continue;
            }
            let sha = args.get(1).map(Resp::text).unwrap_or_default();
            let name = names
                .get(&sha)
                .cloned()
                .unwrap_or_else(|| format!("sha {}", &sha[..sha.len().min(8)]));
            by_script.entry(name).or_default().push((*us).max(0) as u64);
        }
    }
    let costs = by_script
        .into_iter()
        .map(|(script, mut v)| {
            v.sort_unstable();
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64;
            ScriptCost {
                run: cfg.label.clone(),
                calls: v.len() as u64,
                mean_us: v.iter().sum::<u64>() as f64 / v.len() as f64,
                p50_us: q(0.5),
                p99_us: q(0.99),
                max_us: q(1.0),
                script,
            }
        })
        .collect();
    Ok((result, costs))
}

/// The shared-isolation request's control-plane work (acquire + release) driven back to back at
/// high concurrency, so the shard is busy all the time: the regime a ceiling describes. The
/// scenario windows run Redis lightly loaded, where each call finds caches cold and costs more.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SaturatedCost {
    pub pairs: u64,
    pub concurrency: usize,
    pub pairs_per_s: f64,
    pub script_us_per_pair: f64,
    pub cpu_us_per_pair: f64,
    pub ceiling_script_rps: f64,
    pub ceiling_cpu_rps: f64,
}

/// Acquire + release pairs through the real Redis control plane (poolgate-shared) on a separate
/// pool (own key prefix) of 64 warm slots with node-like metadata.
pub async fn saturated_cost(port: u16, pairs: usize, concurrency: usize) -> anyhow::Result<SaturatedCost> {
    use poolgate_control::{
        AcquireRequest, Attempt, Committed, ControlPlane, Outcome, PoolSpec, RedisControlPlane, SlotMeta,
    };
    use poolgate_shared::domain::pool::{Isolation, Strategy};
    use poolgate_shared::domain::server::ServerId;
    eprintln!("[scenarios]   saturated control plane: {pairs} acquire+release pairs at concurrency {concurrency} ...");
    let url = format!("redis://127.0.0.1:{port}");
    let redis = Arc::new(RedisControlPlane::connect(&url, "loadtests-saturated:")?);
    let cp = ControlPlane::Redis(redis);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cp.ping().await.is_err() {
        if Instant::now() > deadline {
            bail!("cannot reach {url}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pool = ServerId::parse("saturated")?;
    let slots = 64u32;
    cp.sync(
        &pool,
        &PoolSpec {
            strategy: Strategy::RoundRobin,
            isolation: Isolation::Shared,
            max_size: slots,
            capacity: 1,
            lease_ttl_ms: 60_000,
            idle_ttl_ms: 1_800_000,
            reservation_ttl_ms: 30_000,
            sticky_c_milli: 1250,
            endpoint_weights: vec![1],
            identity: None,
            fairness: Default::default(),
        },
    )
    .await?;
    let init = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "poolgate-test-upstream", "version": "0.1.0"}});
    let mut leases = Vec::new();
    for i in 0..slots {
        let meta = SlotMeta {
            session_id: Some(uuid::Uuid::new_v4().simple().to_string()),
            protocol_version: Some("2025-11-25".into()),
            endpoint: Some("http://127.0.0.1:9/mcp".into()),
            init: Some(init.to_string()),
        };
        match cp.try_acquire(&pool, &AcquireRequest::new("loadtests", None)).await? {
            Attempt::Create(r) => {
                if let Committed::Leased(l) = cp.commit(&pool, &r.id, &format!("slot-{i}"), &meta).await? {
                    leases.push(l.id);
                }
            }
            Attempt::Leased(l) => leases.push(l.id),
            other => bail!("filling the pool: unexpected {other:?}"),
        }
    }
    for id in leases {
        cp.release(&pool, &id, Outcome::default()).await?;
    }
    let before = tokio::task::spawn_blocking(move || redis_snapshot(port)).await??;
    let started = Instant::now();
    let per_task = (pairs / concurrency.max(1)).max(1);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let (cp, pool) = (cp.clone(), pool.clone());
        set.spawn(async move {
            let holder = format!("loadtests-{t}");
            for _ in 0..per_task {
                match cp.try_acquire(&pool, &AcquireRequest::new(&holder, None)).await? {
                    Attempt::Leased(l) => {
                        let outcome = Outcome {
                            latency_ms: Some(1),
                            ..Outcome::default()
                        };
                        cp.release(&pool, &l.id, outcome).await?;
                    }
                    other => bail!("unexpected {other:?}"),
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let secs = started.elapsed().as_secs_f64();
    let after = tokio::task::spawn_blocking(move || redis_snapshot(port)).await??;
    cp.close().await;
    let done = (per_task * concurrency) as u64;
    let cost = RedisCost::between(&before, &after, done);
    Ok(SaturatedCost {
        pairs: done,
        concurrency,
        pairs_per_s: done as f64 / secs.max(1e-9),
        script_us_per_pair: cost.script_us_per_request,
        cpu_us_per_pair: cost.cpu_us_per_request,
        ceiling_script_rps: cost.ceiling_script_rps,
        ceiling_cpu_rps: cost.ceiling_cpu_rps,
    })
}

/// What every pool script pays before doing anything: Redis time per EVALSHA of `return 1`, and
/// of the prelude followed by `return 1` (13 keys, as the node calls scripts), pipelined so Redis
/// stays busy (warm caches, like a shard near its ceiling).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PreludeCost {
    pub calls: u64,
    pub bare_us: f64,
    pub prelude_us: f64,
}

pub fn prelude_cost(port: u16, lua_dir: &std::path::Path, calls: usize) -> anyhow::Result<PreludeCost> {
    let prelude = std::fs::read_to_string(lua_dir.join("prelude.lua"))
        .with_context(|| format!("reading {}", lua_dir.join("prelude.lua").display()))?;
    let bare = redis_command(port, &["SCRIPT", "LOAD", "return 1"])?;
    let pre = redis_command(port, &["SCRIPT", "LOAD", &format!("{prelude}\nreturn 1")])?;
    let keys: Vec<String> = (1..=13).map(|i| format!("loadtests-prelude:{{p}}:k{i}")).collect();
    let per_call = |sha: &str, with_keys: bool| -> anyhow::Result<f64> {
        let mut args: Vec<&str> = vec!["EVALSHA", sha];
        let n = if with_keys { "13" } else { "0" };
        args.push(n);
        if with_keys {
            args.extend(keys.iter().map(String::as_str));
        }
        let before = redis_snapshot(port)?;
        redis_pipeline(port, &args, calls, 500)?;
        let after = redis_snapshot(port)?;
        let (c0, u0) = before.cmds.get("evalsha").copied().unwrap_or((0, 0));
        let (c1, u1) = after.cmds.get("evalsha").copied().unwrap_or((0, 0));
        Ok(u1.saturating_sub(u0) as f64 / c1.saturating_sub(c0).max(1) as f64)
    };
    Ok(PreludeCost {
        calls: calls as u64,
        bare_us: per_call(&bare, false)?,
        prelude_us: per_call(&pre, true)?,
    })
}

/// RSS growth of a process while `n` client sessions are open and idle.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemoryFigure {
    pub label: String,
    pub process: String,
    pub sessions: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub kib_per_session: f64,
    /// Upstream sessions the test upstream held after opening (pooled sessions created).
    pub upstream_sessions: u64,
}

/// Opens `n` sessions on `url` (each makes one echo call, so per-session state exists), reads the
/// node's RSS growth while they sit idle, then closes them. Bounded by `limit`.
pub async fn idle_sessions_rss(
    label: &str,
    node: &Proc,
    upstream: &Proc,
    url: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<MemoryFigure> {
    eprintln!("[scenarios]   memory {label}: {n} idle sessions ...");
    let client = McpClient::new(Duration::from_secs(30)).map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + limit;
    // Warm the allocator and code paths first (opened and closed, not counted).
    let warm = open_many(&client, url, (n / 20).clamp(10, 200), deadline).await?;
    close_many(&client, warm, deadline).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = node.rss_kib().unwrap_or(0);
    let up_before = upstream_stats(upstream)
        .await
        .ok()
        .and_then(|v| v.get("live_sessions").and_then(Value::as_u64))
        .unwrap_or(0);
    let sessions = open_many(&client, url, n, deadline).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = node.rss_kib().unwrap_or(0);
    let up_after = upstream_stats(upstream)
        .await
        .ok()
        .and_then(|v| v.get("live_sessions").and_then(Value::as_u64))
        .unwrap_or(0);
    let opened = sessions.len() as u64;
    close_many(&client, sessions, deadline).await;
    if opened < n as u64 {
        bail!("only {opened} of {n} sessions opened within {limit:?}");
    }
    Ok(MemoryFigure {
        label: label.to_owned(),
        process: node.name.clone(),
        sessions: opened,
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_session: (after as f64 - before as f64) / opened.max(1) as f64,
        upstream_sessions: up_after.saturating_sub(up_before),
    })
}

const PARALLEL: usize = 32;

async fn open_many(client: &McpClient, url: &str, n: usize, deadline: Instant) -> anyhow::Result<Vec<Session>> {
    let mut out = Vec::with_capacity(n);
    let mut failures = 0usize;
    let mut first_error = None;
    while out.len() < n && Instant::now() < deadline {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..PARALLEL.min(n - out.len()) {
            let (client, url) = (client.clone(), url.to_owned());
            set.spawn(async move {
                let s = client.open(&url, None).await?;
                client.call_tool(&s, "echo", json!({"text": "idle"})).await?;
                Ok::<_, crate::loadgen::client::CallError>(s)
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(s)) => out.push(s),
                Ok(Err(e)) => {
                    failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        if failures > n / 10 + 10 {
            bail!(
                "{failures} session opens failed (first: {})",
                first_error.unwrap_or_default()
            );
        }
    }
    Ok(out)
}

async fn close_many(client: &McpClient, sessions: Vec<Session>, deadline: Instant) {
    let mut it = sessions.into_iter();
    loop {
        if Instant::now() >= deadline + Duration::from_secs(60) {
            return;
        }
        let batch: Vec<Session> = it.by_ref().take(PARALLEL).collect();
        if batch.is_empty() {
            return;
        }
        let mut set = tokio::task::JoinSet::new();
        for s in batch {
            let client = client.clone();
            set.spawn(async move {
                let _ = client.close(&s).await;
            });
        }
        while set.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_skew() {
        let slot = |id: &str, ep: &str, uses| SlotUse {
            slot_id: id.into(),
            endpoint: ep.into(),
            state: "ready".into(),
            uses,
        };
        let u = Utilization::of("x", vec![slot("a", "e1", 30), slot("b", "e1", 10), slot("c", "e2", 20)]);
        assert!((u.skew_max_over_mean - 1.5).abs() < 1e-9);
        assert!((u.endpoint_share["e1"] - 40.0 / 60.0).abs() < 1e-9);
        assert_eq!(u.slots[0].slot_id, "a");
    }

    #[test]
    fn redis_cost_arithmetic() {
        let mut b = RedisSnap::default();
        b.cmds.insert("evalsha".into(), (100, 1000));
        b.cpu_us = 0;
        let mut a = RedisSnap::default();
        a.cmds.insert("evalsha".into(), (300, 3000));
        a.cmds.insert("hget".into(), (500, 50));
        a.cmds.insert("info".into(), (5, 5));
        a.cpu_us = 4000;
        let c = RedisCost::between(&b, &a, 100);
        assert_eq!(c.round_trips, 200);
        assert!((c.round_trips_per_request - 2.0).abs() < 1e-9);
        assert!((c.script_us_per_request - 20.0).abs() < 1e-9);
        assert!((c.ceiling_script_rps - 50_000.0).abs() < 1e-6);
        assert!((c.cpu_us_per_request - 40.0).abs() < 1e-9);
        assert!(!c.commands.contains_key("info"));
    }
}
