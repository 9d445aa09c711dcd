//! `poolctl`: a command-line client of the poolgate admin API.
//!
//! ```text
//! poolctl [--url URL] [--token TOKEN] [--json] COMMAND
//!   health                                  seed 000's check-pool-health.sh: exit 0 healthy,
//!                                           1 degraded pools, 2 unhealthy or unreachable (as the
//!                                           seed's script: a gateway that cannot be asked is critical)
//!   servers                                 list servers
//!   server ID                               one server
//!   server-delete ID
//!   pools                                   every pool's configuration (the seed's backup export)
//!   config ID                               a pool's configuration
//!   config-set ID FIELD=VALUE...            change pool fields (pool_strategy=sticky, pool_max_size=20, ...)
//!   bulk-update [--server-ids A,B] FIELD=VALUE...   the same fields on many servers, all or nothing
//!   stats ID | sessions ID | optimize ID
//!   drain ID [--timeout SECONDS] | reset ID
//!   enable-pooling --percentage N [--dry-run]   seed 000's enable-pooling.sh: pooling on for the
//!                                           servers whose id hashes below N % (10 % ⊂ 50 % ⊂ 100 %)
//!   disable-pooling --percentage N [--dry-run]  pooling off for the same share (a rollback)
//! ```
//! The target comes from `--url` or `POOLGATE_URL` (default `http://127.0.0.1:4444`), the token
//! from `--token` or `POOLGATE_TOKEN`. Output is a human table by default, the API's JSON with
//! `--json`. Exit codes besides `health`'s: 0 success, 1 the API refused (its message is shown),
//! 2 bad usage, 3 the gateway could not be reached.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};

const USAGE: &str = "usage: poolctl [--url URL] [--token TOKEN] [--json] COMMAND
commands:
  health
  servers | server ID | server-delete ID
  pools | config ID | config-set ID FIELD=VALUE...
  bulk-update [--server-ids A,B] FIELD=VALUE...
  stats ID | sessions ID | optimize ID
  drain ID [--timeout SECONDS] | reset ID
  enable-pooling --percentage N [--dry-run] | disable-pooling --percentage N [--dry-run]
environment: POOLGATE_URL (default http://127.0.0.1:4444), POOLGATE_TOKEN";

struct Options {
    url: String,
    token: Option<String>,
    json: bool,
    command: Vec<String>,
}

/// Why poolctl stopped, with its exit code.
enum Failure {
    Usage(String),
    Refused(u16, String),
    Unreachable(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Refused(..) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
        }
    }
}

fn parse(args: Vec<String>) -> Result<Options, Failure> {
    let mut opts = Options {
        url: std::env::var("POOLGATE_URL").unwrap_or_else(|_| "http://127.0.0.1:4444".into()),
        token: std::env::var("POOLGATE_TOKEN").ok().filter(|t| !t.is_empty()),
        json: false,
        command: Vec::new(),
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--url" => opts.url = it.next().ok_or_else(|| Failure::Usage("--url needs a value".into()))?,
            "--token" => {
                opts.token = Some(
                    it.next()
                        .ok_or_else(|| Failure::Usage("--token needs a value".into()))?,
                )
            }
            "--json" => opts.json = true,
            "-h" | "--help" => return Err(Failure::Usage(String::new())),
            _ => opts.command.push(a),
        }
    }
    if opts.command.is_empty() {
        return Err(Failure::Usage("no command given".into()));
    }
    if !(opts.url.starts_with("http://") || opts.url.starts_with("https://")) {
        return Err(Failure::Usage(format!(
            "--url must start with http:// or https:// (got {})",
            opts.url
        )));
    }
    opts.url = opts.url.trim_end_matches('/').to_owned();
    Ok(opts)
}

/// `FIELD=VALUE` pairs to a JSON object: numbers and booleans typed, the rest strings.
fn fields(pairs: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut out = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("expected FIELD=VALUE, got {p}")))?;
        let value = match v {
            "true" => json!(true),
            "false" => json!(false),
            _ => v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n)),
        };
        out.insert(k.to_owned(), value);
    }
    if out.is_empty() {
        return Err(Failure::Usage("give at least one FIELD=VALUE".into()));
    }
    Ok(out)
}

struct Api {
    http: reqwest::Client,
    opts: Options,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let mut req = self.http.request(method, format!("{}{path}", self.opts.url));
        if let Some(t) = &self.opts.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Unreachable(format!("{}: {e}", self.opts.url)))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Unreachable(format!("reading the answer: {e}")))?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let msg = body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string());
            return Err(Failure::Refused(status.as_u16(), msg));
        }
        Ok(body)
    }
}

fn need<'a>(cmd: &'a [String], i: usize, what: &str) -> Result<&'a str, Failure> {
    cmd.get(i)
        .map(String::as_str)
        .ok_or_else(|| Failure::Usage(format!("{} needs {what}", cmd[0])))
}

/// A table: header and rows, columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.len());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

fn cell(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(Value::Number(n)) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or(0.0)),
        Some(other) => other.to_string(),
    }
}

/// Key/value lines for one object.
fn record(v: &Value) -> String {
    match v.as_object() {
        Some(m) => table(
            &["FIELD", "VALUE"],
            m.iter().map(|(k, _)| vec![k.clone(), cell(v, k)]).collect(),
        ),
        None => v.to_string(),
    }
}

fn list(v: &Value, key: Option<&str>, columns: &[&str]) -> String {
    let items = key.and_then(|k| v.get(k)).unwrap_or(v);
    let rows = items
        .as_array()
        .map(|a| a.iter().map(|i| columns.iter().map(|c| cell(i, c)).collect()).collect())
        .unwrap_or_default();
    table(columns, rows)
}

async fn run(api: &Api) -> Result<(String, u8), Failure> {
    use reqwest::Method;
    let cmd = &api.opts.command;
    let id = |i| need(cmd, i, "a server id");
    let json = api.opts.json;
    let show = |v: Value, human: String| if json { v.to_string() } else { human };
    let out = match cmd[0].as_str() {
        "health" => {
            let v = api.call(Method::GET, "/api/servers/pools/health", None).await?;
            let status = v.get("overall_health").and_then(Value::as_str).unwrap_or("unknown");
            let degraded = v.get("degraded_pools").and_then(Value::as_u64).unwrap_or(0);
            let (text, code) = match (status, degraded) {
                ("healthy", 0) => ("OK: All pools healthy".to_owned(), 0),
                ("unhealthy", _) => (format!("CRITICAL: Pool health is {status}"), 2),
                (_, n) if n > 0 => (format!("WARNING: {n} pools degraded"), 1),
                (other, _) => (format!("CRITICAL: Pool health is {other}"), 2),
            };
            let human = format!(
                "{text}\n{}",
                list(
                    &v,
                    Some("pools"),
                    &["server_id", "health_score", "total_sessions", "unhealthy_sessions"]
                )
            );
            return Ok((show(v, human), code));
        }
        "enable-pooling" | "disable-pooling" => {
            let enable = cmd[0] == "enable-pooling";
            let rest = &cmd[1..];
            let dry_run = rest.iter().any(|a| a == "--dry-run");
            let percentage = rest
                .iter()
                .position(|a| a == "--percentage")
                .and_then(|i| rest.get(i + 1))
                .and_then(|p| p.trim_end_matches('%').parse::<u64>().ok())
                .filter(|p| *p <= 100)
                .ok_or_else(|| Failure::Usage(format!("{} needs --percentage N (0-100)", cmd[0])))?;
            let servers = api.call(Method::GET, "/api/servers", None).await?;
            let ids: Vec<String> = servers
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let chosen: Vec<String> = ids.into_iter().filter(|id| rollout_bucket(id) < percentage).collect();
            if !dry_run && !chosen.is_empty() {
                let body = json!({"server_ids": chosen, "pool_enabled": enable});
                api.call(Method::PUT, "/api/servers/bulk-update", Some(body)).await?;
            }
            let v = json!({"percentage": percentage, "enabled": enable, "dry_run": dry_run, "server_ids": chosen});
            let verb = match (dry_run, enable) {
                (true, true) => "would enable",
                (true, false) => "would disable",
                (false, true) => "enabled",
                (false, false) => "disabled",
            };
            let human = format!("{verb} pooling on {} server(s): {}", chosen.len(), chosen.join(", "));
            show(v, human)
        }
        "servers" => {
            let v = api.call(Method::GET, "/api/servers", None).await?;
            let human = list(
                &v,
                None,
                &["id", "name", "pool_enabled", "pool_strategy", "pool_max_size"],
            );
            show(v, human)
        }
        "server" => {
            let v = api.call(Method::GET, &format!("/api/servers/{}", id(1)?), None).await?;
            show(v.clone(), record(&v))
        }
        "server-delete" => {
            let v = api
                .call(Method::DELETE, &format!("/api/servers/{}", id(1)?), None)
                .await?;
            show(v, format!("deleted {}", id(1)?))
        }
        "pools" => {
            let v = api.call(Method::GET, "/api/servers/pools", None).await?;
            let human = list(
                &v,
                None,
                &[
                    "server_id",
                    "pool_enabled",
                    "pool_strategy",
                    "pool_isolation",
                    "pool_min_size",
                    "pool_max_size",
                    "pool_auto_optimize",
                ],
            );
            show(v, human)
        }
        "config" => {
            let v = api
                .call(Method::GET, &format!("/api/servers/{}/pool/config", id(1)?), None)
                .await?;
            show(v.clone(), record(&v))
        }
        "config-set" => {
            let body = Value::Object(fields(&cmd[2.min(cmd.len())..])?);
            let v = api
                .call(Method::PUT, &format!("/api/servers/{}/pool/config", id(1)?), Some(body))
                .await?;
            show(v.clone(), record(&v))
        }
        "bulk-update" => {
            let mut rest: Vec<String> = cmd[1..].to_vec();
            let mut ids = None;
            if let Some(i) = rest.iter().position(|a| a == "--server-ids") {
                let list = rest
                    .get(i + 1)
                    .cloned()
                    .ok_or_else(|| Failure::Usage("--server-ids needs A,B,...".into()))?;
                rest.drain(i..=i + 1);
                ids = Some(
                    list.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                );
            }
            let mut body = fields(&rest)?;
            if let Some(ids) = ids {
                body.insert("server_ids".into(), json!(ids));
            }
            let v = api
                .call(Method::PUT, "/api/servers/bulk-update", Some(Value::Object(body)))
                .await?;
            let human = format!(
                "updated {} servers: {}",
                cell(&v, "updated"),
                v.get("server_ids").map(Value::to_string).unwrap_or_default()
            );
            show(v, human)
        }
        "stats" => {
            let v = api
                .call(Method::GET, &format!("/api/servers/{}/pool/stats", id(1)?), None)
                .await?;
            show(v.clone(), record(&v))
        }
        "sessions" => {
            let v = api
                .call(Method::GET, &format!("/api/servers/{}/pool/sessions", id(1)?), None)
                .await?;
            let human = list(
                &v,
                Some("sessions"),
                &[
                    "slot_id",
                    "state",
                    "endpoint",
                    "active_leases",
                    "bindings",
                    "reuse_count",
                    "latency_ewma_ms",
                ],
            );
            show(v, human)
        }
        "optimize" => {
            let v = api
                .call(Method::GET, &format!("/api/servers/{}/pool/optimize", id(1)?), None)
                .await?;
            let reasons = v
                .get("reasons")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(|s| format!("  - {s}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            let human = format!(
                "current {}  recommended {}  improvement {}  apply {}\n{reasons}",
                cell(&v, "current"),
                cell(&v, "recommended"),
                cell(&v, "improvement"),
                cell(&v, "apply")
            );
            show(v, human)
        }
        "drain" => {
            let mut body = json!({});
            if let Some(i) = cmd.iter().position(|a| a == "--timeout") {
                let t: u64 = need(cmd, i + 1, "--timeout SECONDS")?
                    .parse()
                    .map_err(|_| Failure::Usage("--timeout must be a whole number of seconds".into()))?;
                body = json!({ "timeout": t });
            }
            let v = api
                .call(Method::POST, &format!("/api/servers/{}/pool/drain", id(1)?), Some(body))
                .await?;
            show(v.clone(), record(&v))
        }
        "reset" => {
            let v = api
                .call(
                    Method::POST,
                    &format!("/api/servers/{}/pool/reset", id(1)?),
                    Some(json!({})),
                )
                .await?;
            show(v.clone(), record(&v))
        }
        other => return Err(Failure::Usage(format!("unknown command {other}"))),
    };
    Ok((out, 0))
}

/// A server's rollout bucket in 0..100 from a stable hash (FNV-1a) of its id: the servers chosen
/// at 10 % are among those at 50 %, and those among 100 %, on every run and every machine.
fn rollout_bucket(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 100
}

fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(f) => return fail(&f),
    };
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(3700)).build() {
        Ok(h) => h,
        Err(e) => return fail(&Failure::Unreachable(format!("cannot build an HTTP client: {e}"))),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&Failure::Unreachable(format!("cannot start the runtime: {e}"))),
    };
    let api = Api { http, opts };
    let health = api.opts.command.first().is_some_and(|c| c == "health");
    match runtime.block_on(run(&api)) {
        Ok((out, code)) => {
            println!("{out}");
            ExitCode::from(code)
        }
        // Seed 000's health script treats a gateway it cannot ask as critical.
        Err(f @ Failure::Unreachable(_)) if health => {
            fail(&f);
            ExitCode::from(2)
        }
        Err(f) => fail(&f),
    }
}

fn fail(f: &Failure) -> ExitCode {
    match f {
        Failure::Usage(msg) if msg.is_empty() => println!("{USAGE}"),
        Failure::Usage(msg) => eprintln!("poolctl: {msg}\n{USAGE}"),
        Failure::Refused(status, msg) => eprintln!("poolctl: the gateway refused ({status}): {msg}"),
        Failure::Unreachable(msg) => eprintln!("poolctl: UNKNOWN: cannot reach the gateway: {msg}"),
    }
    ExitCode::from(if matches!(f, Failure::Usage(m) if m.is_empty()) {
        0
    } else {
        f.code()
    })
}
