//! The report of a scenarios run: `report.json` (everything measured), `report.md` (tables with
//! every figure, each ratio next to its same-run baseline, targets met or missed and by how much,
//! the fleet-ceiling arithmetic) and the PNG plots, in one results folder.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{fmt_num, fmt_val, ScenarioResult, Target};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub run: String,
    pub started_utc: String,
    pub smoke: bool,
    pub command: String,
    pub bin_dir: String,
    pub machine: Machine,
    pub wall_s: f64,
    pub scenarios: Vec<ScenarioResult>,
    pub targets: Vec<Target>,
    pub plots: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub load_avg_at_start: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            load_avg_at_start: load_avg(),
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

fn rps(v: f64) -> String {
    format!("{v:.0}")
}

/// Writes report.json and report.md into `dir`.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(report)? + "\n")?;
    std::fs::write(dir.join("report.md"), markdown(report, ""))?;
    Ok(())
}

/// The Markdown report; plot links are prefixed with `link_prefix` (e.g. `RUN/` for a copy one
/// folder up).
pub fn markdown(r: &Report, link_prefix: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# poolgate load-test report `{}`{}\n",
        r.run,
        if r.smoke { " (smoke)" } else { "" }
    );
    let _ = writeln!(
        md,
        "Started {} UTC; `{}`; binaries from `{}`; {} CPUs ({}), kernel {}, load average at start {}; total {:.0} s.\n",
        r.started_utc,
        r.command,
        r.bin_dir,
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.kernel,
        r.machine.load_avg_at_start,
        r.wall_s
    );
    if r.smoke {
        md.push_str("**Smoke run**: tiny counts and sub-second windows, meant to prove the tools work, not to measure. Targets below are not meaningful.\n\n");
    }
    md.push_str("Every process (load generator, nodes, upstreams, Redis, PostgreSQL) runs on this one machine, so gateway runs compete with the load generator for the same cores; each ratio is taken against a baseline measured in the same scenario, minutes apart at most.\n\n");
    for n in &r.notes {
        let _ = writeln!(md, "- {n}");
    }
    if !r.notes.is_empty() {
        md.push('\n');
    }

    md.push_str("## Targets\n\n| target | scenario | measured | target | met | margin | baseline (same run) |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for t in &r.targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} {} | {} {} {} | {} | {} | {} |",
            t.name,
            t.scenario,
            fmt_val(t.measured, &t.unit),
            t.unit,
            t.op,
            fmt_num(t.target),
            t.unit,
            if t.met { "yes" } else { "**no**" },
            t.margin,
            t.baseline
        );
    }
    let met = r.targets.iter().filter(|t| t.met).count();
    let _ = writeln!(md, "\n{met} of {} targets met.\n", r.targets.len());

    ceiling_section(&mut md, r);

    if !r.plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in &r.plots {
            let _ = writeln!(md, "![{p}]({link_prefix}{p})");
        }
        md.push('\n');
    }

    for s in &r.scenarios {
        scenario_section(&mut md, s);
    }
    md
}

fn scenario_section(md: &mut String, s: &ScenarioResult) {
    let _ = writeln!(md, "## {}\n", s.title);
    if !s.setup.is_empty() {
        let _ = writeln!(md, "{}.\n", s.setup);
    }
    let _ = writeln!(
        md,
        "Wall time {:.1} s; load average (1, 5, 15 min) when it started {} on {} cores — it trails, so it includes the previous scenario's own processes as well as any other work on the machine.\n",
        s.wall_s,
        if s.load_avg.is_empty() { "?" } else { &s.load_avg },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    if let Some(e) = &s.error {
        let _ = writeln!(md, "**Failed**: `{}`\n", e.replace('\n', " "));
    }
    if !s.runs.is_empty() {
        md.push_str("| run | mode | load | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | ok | errors | 503 | timeouts |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for run in &s.runs {
            let x = &run.result;
            let load = match (x.mode.as_str(), x.rate_rps, x.concurrency, x.churn_rate) {
                ("open", Some(rate), Some(c), _) => format!("{rate:.0} req/s over {c} sessions"),
                ("closed", _, Some(c), _) => format!("{c} workers"),
                ("churn", _, _, Some(c)) => format!("{c} sessions/s"),
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                x.label,
                x.mode,
                load,
                rps(x.throughput_rps),
                ms(x.latency.p50_ms),
                ms(x.latency.p90_ms),
                ms(x.latency.p99_ms),
                ms(x.latency.p999_ms),
                ms(x.latency.max_ms),
                x.ok,
                x.errors,
                x.rejected_503,
                x.timeouts
            );
        }
        md.push('\n');
        let with_errors: Vec<_> = s.runs.iter().filter(|r| !r.result.errors_by_kind.is_empty()).collect();
        if !with_errors.is_empty() {
            md.push_str("Errors by kind: ");
            let parts: Vec<String> = with_errors
                .iter()
                .map(|r| format!("`{}` {:?}", r.result.label, r.result.errors_by_kind))
                .collect();
            let _ = writeln!(md, "{}.\n", parts.join("; "));
        }
        let workloads: Vec<String> = s
            .runs
            .iter()
            .map(|r| r.result.workload.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let _ = writeln!(md, "Workload: {}.\n", workloads.join("; "));
    }
    if !s.figures.is_empty() {
        md.push_str("| figure | value | detail |\n| --- | --- | --- |\n");
        for f in &s.figures {
            let _ = writeln!(md, "| {} | {} {} | {} |", f.name, fmt_num(f.value), f.unit, f.detail);
        }
        md.push('\n');
    }
    if !s.targets.is_empty() {
        md.push_str("| target | measured | target | met |\n| --- | --- | --- | --- |\n");
        for t in &s.targets {
            let _ = writeln!(
                md,
                "| {} | {} {} | {} {} {} | {} |",
                t.name,
                fmt_val(t.measured, &t.unit),
                t.unit,
                t.op,
                fmt_num(t.target),
                t.unit,
                if t.met { "yes" } else { "**no**" }
            );
        }
        md.push('\n');
    }
    let cpu_runs: Vec<_> = s.runs.iter().filter(|r| !r.cpu.is_empty()).collect();
    if !cpu_runs.is_empty() {
        md.push_str("CPU per measured request (µs; cores busy over the window):\n\n| run | ");
        let procs: Vec<String> = cpu_runs
            .iter()
            .flat_map(|r| r.cpu.iter().map(|c| c.process.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let _ = writeln!(md, "{} |", procs.join(" | "));
        let _ = writeln!(md, "| --- |{}", " --- |".repeat(procs.len()));
        for r in cpu_runs {
            let cells: Vec<String> = procs
                .iter()
                .map(|p| {
                    r.cpu
                        .iter()
                        .find(|c| &c.process == p)
                        .map(|c| format!("{:.1} ({:.2})", c.us_per_request, c.cores))
                        .unwrap_or_else(|| "-".into())
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", r.result.label, cells.join(" | "));
        }
        md.push('\n');
    }
    let redis_runs: Vec<_> = s.runs.iter().filter_map(|r| Some((r, r.redis.as_ref()?))).collect();
    if !redis_runs.is_empty() {
        md.push_str("Redis per measured request (`INFO commandstats` / `INFO cpu` deltas over the measured window):\n\n| run | requests | round trips | round trips / req | EVALSHA calls | script µs / req | Redis CPU µs / req | ceiling (script) req/s | ceiling (CPU) req/s | commands |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for (r, c) in redis_runs {
            let cmds: Vec<String> = c.commands.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4} | {} | {:.2} | {:.2} | {} | {} | {} |",
                r.result.label,
                c.requests,
                c.round_trips,
                c.round_trips_per_request,
                c.evalsha_calls,
                c.script_us_per_request,
                c.cpu_us_per_request,
                fmt_num(c.ceiling_script_rps),
                fmt_num(c.ceiling_cpu_rps),
                cmds.join(", ")
            );
        }
        md.push('\n');
    }
    if !s.scripts.is_empty() {
        md.push_str("Redis time per script call (SLOWLOG with every command logged during separate short runs; the newest entries, a sample):\n\n| profile run | script | calls sampled | mean µs | p50 µs | p99 µs | max µs |\n| --- | --- | --- | --- | --- | --- | --- |\n");
        for c in &s.scripts {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} | {} | {} | {} |",
                c.run, c.script, c.calls, c.mean_us, c.p50_us, c.p99_us, c.max_us
            );
        }
        md.push('\n');
    }
    if !s.memory.is_empty() {
        md.push_str("| memory | process | sessions | RSS before KiB | RSS after KiB | KiB / session | upstream sessions created |\n| --- | --- | --- | --- | --- | --- | --- |\n");
        for m in &s.memory {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.2} | {} |",
                m.label,
                m.process,
                m.sessions,
                m.rss_before_kib,
                m.rss_after_kib,
                m.kib_per_session,
                m.upstream_sessions
            );
        }
        md.push('\n');
    }
    if !s.utilization.is_empty() {
        md.push_str("| run | slots | leases per slot (desc) | max / mean | CV | share per endpoint |\n| --- | --- | --- | --- | --- | --- |\n");
        for u in &s.utilization {
            let uses: Vec<String> = u.slots.iter().map(|s| s.uses.to_string()).collect();
            let shares: Vec<String> = u
                .endpoint_share
                .iter()
                .map(|(e, v)| format!("{} {:.0} %", short_endpoint(e), v * 100.0))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {:.2} | {} |",
                u.label,
                u.slots.len(),
                uses.join(" "),
                u.skew_max_over_mean,
                u.cv,
                shares.join(", ")
            );
        }
        md.push('\n');
    }
    for n in &s.notes {
        let _ = writeln!(md, "- {n}");
    }
    if !s.notes.is_empty() {
        md.push('\n');
    }
}

/// `http://127.0.0.1:PORT/mcp` → `:PORT`.
fn short_endpoint(e: &str) -> String {
    e.rsplit_once(':')
        .map(|(_, p)| format!(":{}", p.trim_end_matches("/mcp")))
        .unwrap_or_else(|| e.to_owned())
}

/// The fleet ceiling on paper, from the measured Redis and node CPU figures.
fn ceiling_section(md: &mut String, r: &Report) {
    let find = |sid: &str, label: &str| {
        r.scenarios
            .iter()
            .find(|s| s.id == sid)
            .and_then(|s| s.run(label))
            .cloned()
    };
    let shared = find("c", "node-closed-shared").or_else(|| find("d", "fleet-closed-shared"));
    let session = find("c", "node-closed").or_else(|| find("d", "fleet-closed"));
    let (Some(shared), Some(session)) = (shared, session) else {
        return;
    };
    let (Some(sh), Some(se)) = (shared.redis.as_ref(), session.redis.as_ref()) else {
        return;
    };
    md.push_str("## Fleet ceiling on paper\n\n");
    let _ = writeln!(
        md,
        "Measured over the windows of `{}` (shared isolation) and `{}` (session isolation): Redis runs each pool's scripts on one thread and every key of a pool hashes to one Cluster slot, so one pool lives on one shard and its ceiling is one core's worth of that pool's script time.\n",
        shared.result.label, session.result.label
    );
    let _ = writeln!(
        md,
        "- Shared isolation: {rt:.3} round trips per request ({c} EVALSHA over {n} requests), {s:.2} µs of script time per request → ceiling = 1e6 / {s:.2} = **{ceil} req/s per pool**. Counting all of Redis' main-thread CPU ({cpu:.2} µs per request, which adds parsing and socket work and everything else Redis did in the window) → 1e6 / {cpu:.2} = {ceil_cpu} req/s.",
        rt = sh.round_trips_per_request,
        c = sh.evalsha_calls,
        n = sh.requests,
        s = sh.script_us_per_request,
        ceil = fmt_num(sh.ceiling_script_rps),
        cpu = sh.cpu_us_per_request,
        ceil_cpu = fmt_num(sh.ceiling_cpu_rps)
    );
    let _ = writeln!(
        md,
        "- Session isolation: {rt:.4} round trips per request ({c} EVALSHA over {n} requests: session set-up and the amortized binding refresh, nothing per call), {s:.3} µs script time per request → ceiling = {ceil} req/s per pool; the shard limits session set-up rate (see (h)), not calls.",
        rt = se.round_trips_per_request,
        c = se.evalsha_calls,
        n = se.requests,
        s = se.script_us_per_request,
        ceil = fmt_num(se.ceiling_script_rps)
    );
    let mut inside: Vec<(String, f64)> = sh
        .commands
        .iter()
        .filter(|(k, _)| !k.starts_with("eval") && !k.starts_with("script") && !k.contains("subscribe"))
        .map(|(k, v)| (k.clone(), *v as f64 / sh.requests.max(1) as f64))
        .collect();
    inside.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total_inside: f64 = inside.iter().map(|x| x.1).sum();
    let top: Vec<String> = inside.iter().take(6).map(|(k, v)| format!("{k} {v:.1}")).collect();
    let _ = writeln!(
        md,
        "- Inside those two scripts Redis runs {total_inside:.1} commands per request ({}, ...), and every script first runs the shared prelude (its cost alone is measured in (c)).",
        top.join(", ")
    );
    let sat = r.scenarios.iter().find_map(|s| s.saturated.clone());
    if let Some(x) = &sat {
        let _ = writeln!(
            md,
            "- The same work with the shard kept busy (acquire + release back to back, {pairs} pairs at concurrency {c}, {pps:.0} pairs/s through one client connection): {s:.2} µs of script time per request → 1e6 / {s:.2} = **{ceil} req/s per pool**; counting Redis main-thread CPU ({cpu:.2} µs) → {ceil_cpu} req/s. This is the regime a ceiling describes; in the scenario windows Redis is mostly idle between calls and each call costs more (colder caches), as the per-script SLOWLOG table in (c) shows. Both depend on what else runs on the machine (the load average per scenario is given below).",
            pairs = x.pairs,
            c = x.concurrency,
            pps = x.pairs_per_s,
            s = x.script_us_per_pair,
            ceil = fmt_num(x.ceiling_script_rps),
            cpu = x.cpu_us_per_pair,
            ceil_cpu = fmt_num(x.ceiling_cpu_rps)
        );
    }
    let shard = sat.as_ref().map_or(sh.ceiling_script_rps, |x| x.ceiling_script_rps);
    let node_cpu = shared
        .cpu
        .iter()
        .filter(|c| c.process.starts_with("node"))
        .map(|c| c.us_per_request)
        .sum::<f64>();
    if node_cpu > 0.0 {
        let per_core = 1e6 / node_cpu;
        let n_max = shard / per_core;
        let _ = writeln!(
            md,
            "- A node spent {node_cpu:.1} µs of CPU per proxied request in `{label}` → about {per_core:.0} req/s per node core. Nodes share nothing but Redis, so N node cores carry min(N × {per_core:.0}, {ceil}) req/s for one pool in shared isolation: linear up to N ≈ {ceil} / {per_core:.0} = **{n_max:.1} node cores** per pool; more pools spread over more shards (Cluster) and scale on. In session isolation a call costs Redis nothing, so the fleet scales with node cores and the shard bounds only session set-up (see (h)).",
            label = shared.result.label,
            ceil = fmt_num(shard),
        );
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_shorten() {
        assert_eq!(short_endpoint("http://127.0.0.1:4321/mcp"), ":4321");
    }

    #[test]
    fn markdown_lists_targets_with_margins() {
        let t = Target::new("c", "x", 0.4, ">=", 0.5, "x", "base".into());
        assert!(!t.met);
        assert!(t.margin.contains("missed by 0.100"), "{}", t.margin);
        let r = Report {
            run: "r".into(),
            targets: vec![t],
            ..Report::default()
        };
        let md = markdown(&r, "");
        assert!(md.contains("| x | c | 0.400 x | >= 0.500 x | **no** |"), "{md}");
        assert!(md.contains("0 of 1 targets met"));
    }
}
