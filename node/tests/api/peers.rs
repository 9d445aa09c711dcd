//! Real MCP peers as subprocesses, shared by sdk.rs and modern.rs: the SDKs `scripts/test.sh`
//! installs (scripts/lib/peers.sh puts them into `.cache/peers/` and exports
//! `POOLGATE_TEST_NPM_DIR`, `POOLGATE_TEST_PY` and `POOLGATE_TEST_PY2`), the client and server
//! scripts of node/tests/sdk/, and what reads their reports.
//!
//! Subprocesses get PATH (and what they need) only, no other variable of ours (no secrets,
//! nothing accidental); each one is owned by a [`ChildGuard`] that kills it when the test ends,
//! passed or failed.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::mcp_client::{merged, register};

/// Longest a client script may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a subprocess server may take to listen.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Session-era protocol versions.
const SESSION_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

// ---------------------------------------------------------------------------
// environment
// ---------------------------------------------------------------------------

fn env_path(var: &str, what: &str) -> PathBuf {
    let value = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests with scripts/test.sh \
             (scripts/lib/peers.sh installs {what} into .cache/peers and exports it)"
        )
    });
    PathBuf::from(value)
}

/// The Python venv with the `mcp` 2.x SDK.
pub fn venv2_python() -> PathBuf {
    env_path("POOLGATE_TEST_PY2", "the Python SDK 2.x venv")
}

/// The Python venv with the `mcp` 1.x SDK.
pub fn venv_python() -> PathBuf {
    env_path("POOLGATE_TEST_PY", "the Python SDK 1.x venv")
}

/// The `npm install --prefix` folder holding the TypeScript SDK and server-everything.
pub fn npm_dir() -> PathBuf {
    env_path("POOLGATE_TEST_NPM_DIR", "the TypeScript SDK and server-everything")
}

/// A file of node/tests/sdk/.
pub fn sdk_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sdk")
        .join(name)
}

/// PATH only: subprocesses get no other variable of ours.
pub fn path_env() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
}

/// A private folder for one test's logs and outputs, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("poolgate-peers-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The contents of a log file (empty if missing), for failure messages.
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The last `n` lines of a log.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// subprocesses
// ---------------------------------------------------------------------------

/// Owns a child process; kills and reaps it when dropped (test end, panic included).
pub struct ChildGuard {
    name: String,
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl ChildGuard {
    /// Starts `cmd` with stdout/stderr going to `<dir>/<name>.stdout` / `.stderr`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &TempDir) -> ChildGuard {
        let stdout = dir.file(&format!("{name}.stdout"));
        let stderr = dir.file(&format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout file"))
            .stderr(File::create(&stderr).expect("create stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        }
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Everything the process wrote so far, stdout then stderr.
    pub fn output(&self) -> String {
        read_log(&self.stdout) + &read_log(&self.stderr)
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {name} stdout (tail) ---\n{}\n--- {name} stderr (tail) ---\n{}",
            tail(&read_log(&self.stdout), 40),
            tail(&read_log(&self.stderr), 40),
            name = self.name,
        )
    }

    /// Waits (without blocking the runtime) for the process to exit; kills it after `timeout`.
    async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not finish within {timeout:?}\n{}", self.name, self.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until something accepts connections on `addr`, failing early if the process exits.
    pub async fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before listening on {addr}\n{}",
                    self.name,
                    self.logs()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {SERVER_START_TIMEOUT:?}\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A loopback address with a port that was free a moment ago (for servers that cannot report the
/// port they bound).
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// Starts the Python server script `script` of node/tests/sdk/ with `python`, its port (a free
/// loopback one) as first argument, then `args`; returns once it listens.
pub async fn start_python_server(
    name: &str,
    python: PathBuf,
    script: &str,
    args: &[&str],
    dir: &TempDir,
) -> (ChildGuard, SocketAddr) {
    let addr = free_loopback_addr();
    let mut cmd = Command::new(python);
    cmd.arg(sdk_file(script))
        .arg(addr.port().to_string())
        .args(args)
        .env_clear()
        .env("PATH", path_env());
    let mut server = ChildGuard::spawn(name, cmd, dir);
    server.wait_listening(addr).await;
    (server, addr)
}

/// A pooled server in front of `url`: [`register`] with, unless `pool` says otherwise, session
/// isolation (the default) and at most 10 upstream sessions.
pub async fn register_pooled(app: &TestApp, id: &str, url: &str, pool: Value) {
    register(app, id, url, merged(json!({"pool_max_size": 10}), pool)).await;
}

// ---------------------------------------------------------------------------
// SDK clients
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
pub enum Sdk {
    /// node/tests/sdk/py2_client.py (mcp 2.x; the plan's `mode` picks the era).
    Python2,
    /// node/tests/sdk/py_client.py (mcp 1.x, session era).
    Python1,
    /// node/tests/sdk/ts_client.mjs (TypeScript SDK, session era).
    TypeScript,
}

/// Runs one client script against `url` with `plan` (see the scripts) and returns the JSON it
/// printed; panics with the whole report and the script's logs unless it succeeded.
pub async fn run_client(sdk: Sdk, url: &str, token: &str, plan: &Value, dir: &TempDir) -> Value {
    let mut cmd = match sdk {
        Sdk::Python2 => {
            let mut c = Command::new(venv2_python());
            c.arg(sdk_file("py2_client.py")).env_clear();
            c
        }
        Sdk::Python1 => {
            let mut c = Command::new(venv_python());
            c.arg(sdk_file("py_client.py")).env_clear();
            c
        }
        Sdk::TypeScript => {
            let mut c = Command::new("node");
            c.arg(sdk_file("ts_client.mjs"))
                .env_clear()
                .env("POOLGATE_TEST_NPM_DIR", npm_dir());
            c
        }
    };
    cmd.arg(url)
        .arg(plan.to_string())
        .env("PATH", path_env())
        .env("POOLGATE_MCP_TOKEN", token);
    let name = format!("{sdk:?}-client-{}", uuid::Uuid::new_v4().simple());
    let mut child = ChildGuard::spawn(&name, cmd, dir);
    let status = child.wait(CLIENT_TIMEOUT).await;
    let stdout = read_log(&child.stdout);
    let report: Option<Value> = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok());
    // Captured by the test runner, shown when the test fails.
    eprintln!(
        "{sdk:?} client report: {}",
        report.as_ref().map(Value::to_string).unwrap_or_default()
    );
    match report {
        Some(out) if status.success() && out["error"].is_null() => out,
        Some(out) => panic!(
            "{sdk:?} SDK client failed ({status}): {}\nfull report: {}\n{}",
            out["error"].as_str().unwrap_or("(no error text)"),
            serde_json::to_string_pretty(&out).unwrap_or_default(),
            child.logs()
        ),
        None => panic!("{sdk:?} SDK client printed no JSON report ({status})\n{}", child.logs()),
    }
}

/// The text results of the report's `calls`, in order.
pub fn call_texts(out: &Value) -> Vec<String> {
    out["calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| c["text"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The tool names the report's `tools/list` gave.
pub fn tool_names(out: &Value) -> Vec<String> {
    out["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// What every successful session-era SDK run (py_client.py, ts_client.mjs) shows: a gateway
/// session id, a session-era protocol version, the expected tools, no failed call, no server
/// error.
pub fn assert_session_basics(out: &Value, expected_tools: &[&str]) {
    let sid = out["sessionId"].as_str().unwrap_or_default();
    assert!(!sid.is_empty(), "no Mcp-Session-Id from the gateway: {out}");
    let version = out["protocolVersion"].as_str().unwrap_or_default();
    assert!(
        SESSION_VERSIONS.contains(&version),
        "unexpected protocol version {version:?}: {out}"
    );
    let tools = tool_names(out);
    for t in expected_tools {
        assert!(tools.iter().any(|n| n == t), "tools/list lacks {t}: {tools:?}");
    }
    for call in out["calls"].as_array().into_iter().flatten() {
        assert_eq!(call["isError"], json!(false), "tool call failed: {call}");
    }
    // Every HTTP exchange the SDK made was answered without a server error.
    for h in out["http"].as_array().into_iter().flatten() {
        let status = h["status"].as_u64().unwrap_or(0);
        assert!((200..500).contains(&status), "HTTP exchange failed: {h} in {out}");
    }
}
