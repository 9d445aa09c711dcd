//! `loadgen`: drives many concurrent MCP client sessions against Streamable HTTP MCP URLs on
//! loopback and prints one JSON result (throughput, p50/p90/p99/p99.9/max, errors by kind, 503s
//! apart). Usable against poolgate, the test upstream, or any other gateway (`--token`).
//!
//! ```text
//! loadgen --url URL [--url URL]... [--token T]
//!         [--mode closed|open|churn] [--concurrency N] [--rate RPS] [--sessions N]
//!         [--requests N] [--duration S] [--warmup S]
//!         [--mix echo=80,slow=10,list=10] [--slow uniform:5:15|lognormal:5:1|pareto:3:1.5|fixed:10]
//!         [--slow-cap-ms MS] [--calls-per-session N] [--churn-rate N] [--churn-calls N]
//!         [--timeout-ms MS] [--max-in-flight N] [--echo-bytes N] [--seed N] [--label L] [--out FILE]
//! ```
//! Exit codes: 0 done (errors are in the JSON), 1 run failure, 2 bad usage or a non-loopback URL.

use std::time::Duration;

use poolgate_loadtests::loadgen::dist::{Dist, Mix};
use poolgate_loadtests::loadgen::{self, LoadConfig, Mode};

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!("usage: loadgen --url URL [--mode closed|open|churn] [--concurrency N] [--rate RPS] [--duration S] ... (see the module docs)");
    std::process::exit(2)
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> T {
    v.parse()
        .unwrap_or_else(|_| usage(&format!("{flag}: {v:?} is not a valid number")))
}

fn secs(flag: &str, v: &str) -> Duration {
    let s: f64 = num(flag, v);
    if !(0.0..=3600.0).contains(&s) {
        usage(&format!("{flag} must be between 0 and 3600 seconds"));
    }
    Duration::from_secs_f64(s)
}

fn parse() -> (LoadConfig, Option<String>) {
    let mut cfg = LoadConfig::default();
    let (mut mode, mut concurrency, mut rate, mut sessions) = ("closed".to_owned(), 16usize, 0f64, 16usize);
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            usage("help");
        }
        let Some(v) = it.next() else {
            usage(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => cfg.urls.push(v),
            "--token" => cfg.tokens.push(v),
            "--mode" => mode = v,
            "--concurrency" => concurrency = num(&flag, &v),
            "--rate" => rate = num(&flag, &v),
            "--sessions" => sessions = num(&flag, &v),
            "--requests" => cfg.requests = num(&flag, &v),
            "--duration" => cfg.duration = secs(&flag, &v),
            "--warmup" => cfg.warmup = secs(&flag, &v),
            "--mix" => cfg.mix = Mix::parse(&v).unwrap_or_else(|e| usage(&e)),
            "--slow" => cfg.slow = Dist::parse(&v).unwrap_or_else(|e| usage(&e)),
            "--slow-cap-ms" => cfg.slow_cap_ms = num(&flag, &v),
            "--calls-per-session" => cfg.calls_per_session = num(&flag, &v),
            "--churn-rate" => cfg.churn_rate = num(&flag, &v),
            "--churn-calls" => cfg.churn_calls = num(&flag, &v),
            "--timeout-ms" => cfg.timeout = Duration::from_millis(num(&flag, &v)),
            "--max-in-flight" => cfg.max_in_flight = num(&flag, &v),
            "--echo-bytes" => cfg.echo_bytes = num(&flag, &v),
            "--seed" => cfg.seed = num(&flag, &v),
            "--label" => cfg.label = v,
            "--out" => out = Some(v),
            other => usage(&format!("unknown option {other}")),
        }
    }
    cfg.mode = match mode.as_str() {
        "closed" => Mode::Closed { workers: concurrency },
        "open" => Mode::Open { rate, sessions },
        "churn" => Mode::Churn,
        other => usage(&format!("--mode {other:?}: closed, open or churn")),
    };
    if cfg.timeout.is_zero() || cfg.timeout > Duration::from_secs(600) {
        usage("--timeout-ms must be 1..=600000");
    }
    if let Err(e) = cfg.validate() {
        usage(&e);
    }
    (cfg, out)
}

#[tokio::main]
async fn main() {
    let (cfg, out) = parse();
    let result = match loadgen::run(&cfg, None).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    };
    let json = match serde_json::to_string_pretty(&result) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, json + "\n") {
                eprintln!("loadgen: writing {path}: {e}");
                std::process::exit(1);
            }
        }
        None => println!("{json}"),
    }
}
