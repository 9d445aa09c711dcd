//! The one process launcher of the benchmarks, the scenarios and the tests: test upstreams,
//! poolgate nodes, a private `redis-server` (and `redis-sentinel`) and a private PostgreSQL —
//! each on 127.0.0.1, on a free port, with its files and log under a directory the caller owns,
//! and stopped when its handle is dropped (also on error or panic), so nothing is left behind and
//! no system-wide service is touched. `control-bench`, the scenarios and the control plane's
//! failure tests (`control/tests/control_failures.rs`) all start Redis here.
//!
//! Also a minimal RESP client for commands between runs (`INFO`, `SENTINEL …`), and the `/proc`
//! readings the report needs: resident memory (`VmRSS`) and CPU time per process.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// Every wait for a process to come up is bounded by this.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared secret nodes of one fleet verify tokens and session ids with (test value).
pub const JWT_SECRET: &str = "poolgate-loadtests-secret-0123456789abcdef0123456789";

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port on 127.0.0.1, never the same one twice in this process.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut guard = HANDED_OUT.lock().map_err(|_| anyhow!("port registry poisoned"))?;
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    bail!("no free port found after 100 tries")
}

/// The temporary directory of one `scenarios` invocation (removed on drop unless kept).
pub struct Workdir {
    pub path: PathBuf,
    keep: bool,
}

impl Workdir {
    pub fn new(keep: bool) -> anyhow::Result<Workdir> {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        let path = std::env::temp_dir().join(format!("poolgate-scenarios-{stamp}-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Workdir { path, keep })
    }

    /// A fresh subdirectory.
    pub fn sub(&self, name: &str) -> anyhow::Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("[scenarios] kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB (`VmRSS` of /proc/<pid>/status).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// Why the process is gone (with its log's tail), if it exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}); log:\n{}",
                self.name,
                tail(&self.log, 30)
            )),
            _ => None,
        }
    }

    /// Waits until the port accepts TCP connections (or the process dies).
    pub fn wait_port(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            if let Some(why) = self.exited() {
                bail!(why);
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "{} did not listen on 127.0.0.1:{} within {:?}; log:\n{}",
            self.name,
            self.port,
            START_TIMEOUT,
            tail(&self.log, 30)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of a process, in microseconds.
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

fn spawn(name: &str, mut cmd: Command, log: PathBuf, port: u16) -> anyhow::Result<Proc> {
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {name} ({program})"))?;
    Ok(Proc {
        name: name.to_owned(),
        port,
        log,
        child,
    })
}

/// Where the release (or debug) binaries are.
#[derive(Clone, Debug)]
pub struct Bins {
    pub dir: PathBuf,
    /// Test upstreams answer as event streams written like the SDK servers (`--sse 1`).
    pub sse_upstreams: bool,
}

impl Bins {
    pub fn check(&self) -> anyhow::Result<()> {
        for b in ["poolgate-node", "test-upstream"] {
            let p = self.dir.join(b);
            if !p.is_file() {
                bail!(
                    "{} not found: build first with `cargo build --release -p poolgate-node -p poolgate-loadtests` (or pass --bin-dir)",
                    p.display()
                );
            }
        }
        Ok(())
    }
}

/// A test upstream (`test-upstream`) with the given handshake and per-call latency.
pub fn start_upstream(bins: &Bins, dir: &Path, name: &str, handshake_ms: u64, latency_ms: u64) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let mut cmd = Command::new(bins.dir.join("test-upstream"));
    cmd.env_clear().args([
        "--port",
        &port.to_string(),
        "--handshake-ms",
        &handshake_ms.to_string(),
        "--latency-ms",
        &latency_ms.to_string(),
        "--sse",
        if bins.sse_upstreams { "1" } else { "0" },
    ]);
    let mut p = spawn(name, cmd, dir.join(format!("{name}.log")), port)?;
    p.wait_port()?;
    Ok(p)
}

pub fn upstream_url(p: &Proc) -> String {
    format!("http://127.0.0.1:{}/mcp", p.port)
}

/// A private `redis-server` (no persistence) on a free port; see [`start_redis_on`].
pub fn start_redis(dir: &Path, name: &str) -> anyhow::Result<Proc> {
    start_redis_on(free_port()?, dir, name, &[])
}

/// A private `redis-server` (no persistence, foreground) on `port` with `extra` arguments, its
/// files in `dir/name` and its log in `dir/name.log`; returns once it accepts connections. The
/// same port again models a restart.
pub fn start_redis_on(port: u16, dir: &Path, name: &str, extra: &[&str]) -> anyhow::Result<Proc> {
    let rdir = dir.join(name);
    std::fs::create_dir_all(&rdir)?;
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ])
    .arg("--dir")
    .arg(&rdir)
    .args(extra);
    let mut p = spawn(name, cmd, dir.join(format!("{name}.log")), port)
        .context("redis-server is needed on PATH (apt-get install redis-server)")?;
    p.wait_port()?;
    Ok(p)
}

/// A private `redis-sentinel` on `port` monitoring the primary on `primary` as `service`, with
/// quick failure detection (1 s down-after, 5 s failover timeout).
pub fn start_sentinel_on(port: u16, primary: u16, service: &str, dir: &Path, name: &str) -> anyhow::Result<Proc> {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nsentinel resolve-hostnames no\nsentinel monitor {service} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {service} 1000\nsentinel failover-timeout {service} 5000\n"
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let mut cmd = Command::new("redis-sentinel");
    cmd.arg(&conf);
    let mut p = spawn(name, cmd, dir.join(format!("{name}.log")), port)
        .context("redis-sentinel is needed on PATH (apt-get install redis-sentinel)")?;
    p.wait_port()?;
    Ok(p)
}

/// Environment of a node: embedded (SQLite) or distributed (Redis + PostgreSQL).
pub struct NodeEnv {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub auth_required: bool,
    pub extra: Vec<(String, String)>,
}

/// A `poolgate-node` on a free port; ready when `/ready` answers 200.
pub async fn start_node(bins: &Bins, dir: &Path, name: &str, env: &NodeEnv) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let ndir = dir.join(name);
    std::fs::create_dir_all(&ndir)?;
    let mut cmd = Command::new(bins.dir.join("poolgate-node"));
    // A clean environment: nothing from the caller's shell (REDIS_URL, RUST_LOG, ...) leaks in,
    // and the working directory has no config.yaml.
    cmd.env_clear()
        .current_dir(&ndir)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "warn")
        .env("AUTH_REQUIRED", if env.auth_required { "true" } else { "false" })
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("DATABASE_URL", &env.database_url);
    if let Some(r) = &env.redis_url {
        cmd.env("REDIS_URL", r);
    }
    for (k, v) in &env.extra {
        cmd.env(k, v);
    }
    cmd.arg("serve");
    let mut p = spawn(name, cmd, dir.join(format!("{name}.log")), port)?;
    p.wait_port()?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://127.0.0.1:{port}/ready");
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(why) = p.exited() {
            bail!(why);
        }
        if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await {
            if r.status().is_success() {
                return Ok(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{name} not ready within {START_TIMEOUT:?}; log:\n{}", tail(&p.log, 30))
}

pub fn node_base(p: &Proc) -> String {
    format!("http://127.0.0.1:{}", p.port)
}

/// PostgreSQL for distributed mode: a private instance (initdb in the work dir, trust auth on
/// 127.0.0.1, durability off) or an existing loopback server given by URL.
pub enum Postgres {
    Private {
        data: PathBuf,
        bindir: PathBuf,
        port: u16,
        as_postgres: bool,
    },
    External(url::Url),
}

fn newest_pg_bindir() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let Ok(version) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let bin = entry.path().join("bin");
        if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, b)| b)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary (as the `postgres` user when we are root: it refuses root).
fn pg_command(bin: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run_checked(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Postgres {
    pub fn external(raw: &str) -> anyhow::Result<Postgres> {
        let u = url::Url::parse(raw).context("--pg-url")?;
        // `postgres://` is not a special scheme, so the url crate leaves an IP host as a domain.
        let loopback = match u.host() {
            Some(url::Host::Domain(d)) => {
                d == "localhost"
                    || d.trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if !loopback {
            bail!("--pg-url must point at a loopback address");
        }
        Ok(Postgres::External(u))
    }

    pub fn start_private(dir: &Path) -> anyhow::Result<Postgres> {
        let bindir = newest_pg_bindir().ok_or_else(|| {
            anyhow!("no PostgreSQL under /usr/lib/postgresql/*/bin (apt-get install postgresql), or pass --pg-url")
        })?;
        let port = free_port()?;
        let pgdir = dir.join("pg");
        let data = pgdir.join("data");
        let sock = pgdir.join("run");
        std::fs::create_dir_all(&sock)?;
        let as_postgres = is_root();
        if as_postgres {
            run_checked(
                {
                    let mut c = Command::new("chown");
                    c.arg("-R").arg("postgres:postgres").arg(&pgdir);
                    c
                },
                "chown of the PostgreSQL directory",
            )?;
        }
        let mut initdb = pg_command(&bindir.join("initdb"), as_postgres);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        run_checked(initdb, "initdb")?;
        let pg = Postgres::Private {
            data: data.clone(),
            bindir: bindir.clone(),
            port,
            as_postgres,
        };
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 200\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            sock.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?
            .write_all(conf.as_bytes())?;
        let mut start = pg_command(&bindir.join("pg_ctl"), as_postgres);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pgdir.join("postgres.log"))
            .args(["-w", "-t", "60", "start"]);
        run_checked(start, "pg_ctl start")?;
        Ok(pg)
    }

    /// A fresh database; its URL.
    pub fn create_db(&self, name: &str) -> anyhow::Result<String> {
        let admin = match self {
            Postgres::Private { port, .. } => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            Postgres::External(u) => u.to_string(),
        };
        let mut psql = Command::new("psql");
        psql.arg(&admin)
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("DROP DATABASE IF EXISTS {name}"))
            .arg("-c")
            .arg(format!("CREATE DATABASE {name}"));
        run_checked(psql, "psql CREATE DATABASE")?;
        let mut u = url::Url::parse(&admin)?;
        u.set_path(&format!("/{name}"));
        Ok(u.to_string())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Postgres::Private {
            data,
            bindir,
            as_postgres,
            ..
        } = self
        {
            let mut stop = pg_command(&bindir.join("pg_ctl"), *as_postgres);
            stop.arg("-D")
                .arg(&*data)
                .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
            let _ = stop.stdin(Stdio::null()).output();
        }
    }
}

/// A RESP reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Resp {
    Text(String),
    Int(i64),
    Nil,
    Array(Vec<Resp>),
}

impl Resp {
    pub fn text(&self) -> String {
        match self {
            Resp::Text(t) => t.clone(),
            Resp::Int(i) => i.to_string(),
            Resp::Nil => String::new(),
            Resp::Array(a) => a.iter().map(Resp::text).collect::<Vec<_>>().join("\n"),
        }
    }
}

/// One Redis command over a short-lived connection (RESP); the reply as text (bulk or simple
/// string). Blocking, bounded by 5 s timeouts: called between load runs only.
pub fn redis_command(port: u16, args: &[&str]) -> anyhow::Result<String> {
    Ok(redis_call(port, args)?.text())
}

/// One Redis command; the whole reply.
pub fn redis_call(port: u16, args: &[&str]) -> anyhow::Result<Resp> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    s.write_all(&req)?;
    // Parsing is retried only when the buffer has grown enough (or the socket went quiet), so a
    // large reply (SLOWLOG) costs linear time, not quadratic.
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut parsed_at = 0usize;
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) => bail!("redis closed the connection"),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if let Some((reply, _)) = parse_reply(&buf)? {
                    return Ok(reply);
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        buf.extend_from_slice(&chunk[..n]);
        if n < chunk.len() || buf.len() >= 2 * parsed_at.max(64 * 1024) {
            parsed_at = buf.len();
            if let Some((reply, _)) = parse_reply(&buf)? {
                return Ok(reply);
            }
        }
        if buf.len() > 256 * 1024 * 1024 {
            bail!("redis reply too large");
        }
    }
}

/// Sends the same command `n` times, pipelined in batches of `batch` (Redis never idles between
/// them), and reads every reply. Blocking, bounded by 5 s timeouts per read.
pub fn redis_pipeline(port: u16, args: &[&str], n: usize, batch: usize) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut one = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        one.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        one.extend_from_slice(a.as_bytes());
        one.extend_from_slice(b"\r\n");
    }
    let batch = batch.max(1);
    let mut left = n;
    let mut chunk = vec![0u8; 64 * 1024];
    while left > 0 {
        let k = left.min(batch);
        s.write_all(&one.repeat(k))?;
        let (mut buf, mut got) = (Vec::new(), 0usize);
        while got < k {
            let r = s.read(&mut chunk)?;
            if r == 0 {
                bail!("redis closed the connection");
            }
            buf.extend_from_slice(&chunk[..r]);
            let mut at = 0;
            while let Some((_, used)) = parse_reply(&buf[at..])? {
                at += used;
                got += 1;
            }
            buf.drain(..at);
        }
        left -= k;
    }
    Ok(())
}

/// A complete reply at the start of `buf` and its length, `None` if more bytes are needed.
fn parse_reply(buf: &[u8]) -> anyhow::Result<Option<(Resp, usize)>> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[1..eol]).into_owned();
    let next = eol + 2;
    match buf.first() {
        Some(b'+') => Ok(Some((Resp::Text(head), next))),
        Some(b':') => Ok(Some((Resp::Int(head.parse().context("integer reply")?), next))),
        Some(b'-') => bail!("redis error: {head}"),
        Some(b'$') => {
            let len: i64 = head.parse().context("bulk length")?;
            if len < 0 {
                return Ok(Some((Resp::Nil, next)));
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            Ok(Some((
                Resp::Text(String::from_utf8_lossy(&buf[next..end]).into_owned()),
                end + 2,
            )))
        }
        Some(b'*') => {
            let n: i64 = head.parse().context("array length")?;
            if n < 0 {
                return Ok(Some((Resp::Nil, next)));
            }
            let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
            let mut at = next;
            for _ in 0..n {
                match parse_reply(&buf[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), at)))
        }
        _ => bail!("unexpected redis reply {head:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_replies() {
        let one = |b: &[u8]| parse_reply(b).ok().flatten().map(|(r, _)| r);
        assert_eq!(one(b"+OK\r\n"), Some(Resp::Text("OK".into())));
        assert_eq!(one(b"$5\r\nhel"), None);
        assert_eq!(one(b"$5\r\nhello\r\n"), Some(Resp::Text("hello".into())));
        assert!(parse_reply(b"-ERR nope\r\n").is_err());
        assert_eq!(
            one(b"*2\r\n:7\r\n*1\r\n$2\r\nab\r\n"),
            Some(Resp::Array(vec![
                Resp::Int(7),
                Resp::Array(vec![Resp::Text("ab".into())])
            ]))
        );
        assert_eq!(one(b"*2\r\n:7\r\n"), None);
    }

    #[test]
    fn own_process_readings() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|r| r > 0));
        assert!(cpu_us(pid).is_some());
    }
}
