//! `scenarios`: runs the load-test scenarios (a)-(i) and writes the report.
//!
//! ```text
//! cargo build --release -p poolgate-node -p poolgate-loadtests
//! cargo run --release -p poolgate-loadtests --bin scenarios -- all          # full run, a few minutes each
//! cargo run --release -p poolgate-loadtests --bin scenarios -- c e          # some of them
//! cargo run -p poolgate-loadtests --bin scenarios -- --smoke --bin-dir target/debug all   # seconds, CI
//! ```
//! `scenarios --render DIR` re-draws the plots and rewrites `report.md` from `DIR/report.json`
//! (after a change to the report's layout; nothing is run).
//!
//! Options: `--smoke` (tiny counts, sub-second windows), `--bin-dir DIR` (where `poolgate-node` and
//! `test-upstream` are; default `target/release`), `--out DIR` (default `loadtests/results`),
//! `--pg-url URL` (an existing loopback PostgreSQL for (c), (d), (h); default: a private one via
//! initdb), `--keep` (keep the work directory with the process logs), `--sse` (the test upstreams
//! answer as event streams written like the SDK servers: headers, then each event).
//!
//! Writes `<out>/<UTC timestamp>[-smoke]/report.{json,md}` and PNG plots; a full run of all
//! scenarios also copies the summary to `<out>/latest.md`. Exit codes: 0 every scenario ran (targets
//! may be missed: the report says which), 1 a scenario failed, 2 bad usage or missing binaries.

use std::path::PathBuf;
use std::time::Instant;

use poolgate_loadtests::scenarios::report::{self, Machine, Report};
use poolgate_loadtests::scenarios::{plot, run_dir, run_scenario, Ctx, Options, ALL};

fn usage(msg: &str) -> ! {
    eprintln!("scenarios: {msg}");
    eprintln!("usage: scenarios [--smoke] [--bin-dir DIR] [--out DIR] [--pg-url URL] [--keep] [--sse] all|a|b|c|d|e|f|g|h ...");
    std::process::exit(2)
}

/// `--render DIR`: rebuild report.md and the plots from report.json.
fn render(dir: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(dir.join("report.json"))?;
    let mut rep: Report = serde_json::from_str(&text)?;
    rep.notes.retain(|n| !n.contains("no plots drawn"));
    match plot::draw_all(&rep, dir) {
        Ok(files) => rep.plots = files,
        Err(e) => rep.notes.push(format!("{e:#}")),
    }
    report::write(&rep, dir)?;
    println!("report: {}", dir.join("report.md").display());
    Ok(())
}

fn parse() -> (Options, Vec<String>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = root.parent().map(PathBuf::from).unwrap_or_else(|| root.clone());
    let mut opts = Options {
        bin_dir: workspace.join("target").join("release"),
        smoke: false,
        out_dir: root.join("results"),
        pg_url: None,
        keep: false,
        sse: false,
    };
    let mut names = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match arg.as_str() {
            "--smoke" => opts.smoke = true,
            "--keep" => opts.keep = true,
            "--sse" => opts.sse = true,
            "--bin-dir" => opts.bin_dir = PathBuf::from(value("--bin-dir")),
            "--out" => opts.out_dir = PathBuf::from(value("--out")),
            "--pg-url" => opts.pg_url = Some(value("--pg-url")),
            "-h" | "--help" => usage("help"),
            "all" => names.extend(ALL.iter().map(|s| s.to_string())),
            s if ALL.contains(&s) => names.push(s.to_owned()),
            other => usage(&format!("unknown scenario or option {other:?}")),
        }
    }
    if names.is_empty() {
        usage("name at least one scenario, or all");
    }
    names.dedup();
    // Relative paths are taken from the current directory, as a user expects.
    for p in [&mut opts.bin_dir, &mut opts.out_dir] {
        if p.is_relative() {
            if let Ok(cwd) = std::env::current_dir() {
                *p = cwd.join(&*p);
            }
        }
    }
    (opts, names)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--render") {
        let Some(dir) = args.get(2) else {
            usage("--render needs a results directory")
        };
        if let Err(e) = render(std::path::Path::new(dir)) {
            eprintln!("scenarios: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let (opts, names) = parse();
    let started = Instant::now();
    let started_utc = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let machine = Machine::probe();
    let mut ctx = match Ctx::new(opts.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scenarios: {e:#}");
            std::process::exit(2);
        }
    };
    let mut results = Vec::new();
    let interrupted = tokio::select! {
        _ = async {
            for id in &names {
                let mut r = run_scenario(&mut ctx, id).await;
                if r.error.is_none() {
                    if let Some(empty) = r.runs.iter().find(|x| x.result.ok == 0) {
                        r.error = Some(format!("run {} had no successful request", empty.result.label));
                    }
                }
                results.push(r);
            }
        } => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    // Stops PostgreSQL and removes the work directory (processes of a scenario stop with it).
    drop(ctx);
    if interrupted {
        eprintln!("scenarios: interrupted; every process started was stopped");
        std::process::exit(130);
    }
    let (run, dir) = match run_dir(&opts) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("scenarios: {e:#}");
            std::process::exit(1);
        }
    };
    let mut rep = Report {
        run: run.clone(),
        started_utc,
        smoke: opts.smoke,
        command: format!(
            "scenarios {}{}{}",
            if opts.smoke { "--smoke " } else { "" },
            if opts.sse { "--sse " } else { "" },
            names.join(" ")
        ),
        bin_dir: opts.bin_dir.display().to_string(),
        machine,
        wall_s: started.elapsed().as_secs_f64(),
        targets: results.iter().flat_map(|s| s.targets.clone()).collect(),
        scenarios: results,
        ..Report::default()
    };
    match plot::draw_all(&rep, &dir) {
        Ok(files) => rep.plots = files,
        Err(e) => rep.notes.push(format!("{e:#}")),
    }
    if let Err(e) = report::write(&rep, &dir) {
        eprintln!("scenarios: writing the report: {e:#}");
        std::process::exit(1);
    }
    let full = !opts.smoke && ALL.iter().all(|a| names.iter().any(|n| n == a));
    if full {
        let latest = report::markdown(&rep, &format!("{run}/"));
        if let Err(e) = std::fs::write(opts.out_dir.join("latest.md"), latest) {
            eprintln!("scenarios: writing latest.md: {e}");
        }
    }
    println!("report: {}", dir.join("report.md").display());
    for t in &rep.targets {
        println!(
            "  [{}] {}: {} {} (target {} {} {})",
            if t.met { "met" } else { "MISSED" },
            t.name,
            poolgate_loadtests::scenarios::fmt_val(t.measured, &t.unit),
            t.unit,
            t.op,
            poolgate_loadtests::scenarios::fmt_num(t.target),
            t.unit
        );
    }
    let failed: Vec<&str> = rep
        .scenarios
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| s.id.as_str())
        .collect();
    println!("{} scenario(s) in {:.1} s", rep.scenarios.len(), rep.wall_s);
    if !failed.is_empty() {
        eprintln!("scenarios: failed: {}", failed.join(", "));
        std::process::exit(1);
    }
}
