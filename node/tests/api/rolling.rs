//! A local rolling restart with real processes: three `poolgate-node`s and two
//! `poolgate-coordinator`s on one Redis and one PostgreSQL, clients under steady load behind a
//! readiness-gated balancer (as Kubernetes would route). Nodes are replaced one by one through
//! SIGTERM: no client request fails, every client session continues on another node with its
//! upstream state, and no lease is left behind. Then one node is SIGKILLed: only requests it was
//! running fail, and its leases come back within the lease TTL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poolgate_loadtests::upstream::{Upstream, UpstreamConfig};
use poolgate_shared::auth::{now_unix, Claims, JwtKey};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection as _;

use crate::helpers::{pg_admin_url, redis_url};
use crate::mcp_client::unique_prefix;

const NODE: &str = env!("CARGO_BIN_EXE_poolgate-node");
const SECRET: &str = "rolling-restart-secret-rolling-restart-secret";
const LEASE_TTL_S: u64 = 2;

/// A child process whose stderr is collected; killed when dropped.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn start(bin: &std::path::Path, env: &[(String, String)]) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("process starts");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = log.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Proc { child, log }
    }

    /// The address from its "listening" log line.
    async fn addr(&self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.log.lock().ok().and_then(|l| {
                let line = l.iter().find(|l| l.contains(marker))?;
                let rest = line.split("addr=").nth(1)?;
                Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
            });
            if let Some(a) = found {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no '{marker}' in {:?}",
                self.log.lock().map(|l| l.clone())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill {sig}");
    }

    /// Waits for the process to exit; its exit code.
    async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "process did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The balancer: the nodes in rotation (ready and not being removed).
#[derive(Default)]
struct Balancer {
    nodes: Mutex<Vec<String>>,
    next: AtomicU64,
}

impl Balancer {
    fn pick(&self) -> Option<String> {
        let nodes = self.nodes.lock().ok()?;
        if nodes.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % nodes.len();
        Some(nodes[i].clone())
    }
    fn add(&self, addr: &str) {
        if let Ok(mut n) = self.nodes.lock() {
            n.push(addr.to_owned());
        }
    }
    fn remove(&self, addr: &str) {
        if let Ok(mut n) = self.nodes.lock() {
            n.retain(|a| a != addr);
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: Mutex<Vec<String>>,
    /// Sessions whose upstream state broke (a counter that did not continue).
    broken: AtomicU64,
}

async fn ready(http: &reqwest::Client, addr: &str) -> bool {
    http.get(format!("http://{addr}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

/// One MCP POST through the balancer; the answer's JSON-RPC body, or why it failed.
async fn post(
    http: &reqwest::Client,
    lb: &Balancer,
    token: &str,
    session: Option<&str>,
    server: &str,
    body: Value,
) -> Result<(Option<String>, Value), String> {
    let node = lb.pick().ok_or("no node in rotation")?;
    let mut req = http
        .post(format!("http://{node}/servers/{server}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.map_err(|e| format!("{node}: {e}"))?;
    let status = resp.status();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.map_err(|e| format!("{node}: body: {e}"))?;
    if !status.is_success() {
        return Err(format!("{node}: {status}: {text}"));
    }
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .next_back()
        .map_or(text.as_str(), str::trim);
    let v: Value = if json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(json).map_err(|e| format!("{node}: {e}: {text}"))?
    };
    if v.get("error").is_some() {
        return Err(format!("{node}: {v}"));
    }
    Ok((sid, v))
}

/// A client: one session per server, then counter calls (session isolation: must continue
/// 1, 2, 3, ... whatever node answers) and echo calls (shared isolation), paced, until `stop`.
async fn client(
    i: usize,
    http: reqwest::Client,
    lb: Arc<Balancer>,
    token: String,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let init = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": format!("c{i}"), "version": "1"}}})
    };
    let mut sessions = Vec::new();
    for server in ["sess", "shared"] {
        let (sid, _) = post(&http, &lb, &token, None, server, init(1))
            .await
            .expect("initialize");
        let sid = sid.expect("session id");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        post(&http, &lb, &token, Some(&sid), server, note)
            .await
            .expect("initialized");
        sessions.push(sid);
    }
    let mut expected = 1u64;
    // After a failed call the client cannot know whether the upstream ran it.
    let mut uncertain = false;
    let mut id = 10i64;
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        id += 1;
        let call =
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "counter", "arguments": {}}});
        match post(&http, &lb, &token, Some(&sessions[0]), "sess", call).await {
            Ok((_, v)) => {
                let count = v.pointer("/result/structuredContent/count").and_then(Value::as_u64);
                let continued = count == Some(expected) || (uncertain && count == Some(expected + 1));
                if !continued {
                    tally.broken.fetch_add(1, Ordering::Relaxed);
                }
                expected = count.unwrap_or(expected) + 1;
                uncertain = false;
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                uncertain = true;
                tally.failed.lock().expect("tally").push(e);
            }
        }
        id += 1;
        let echo = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}});
        match post(&http, &lb, &token, Some(&sessions[1]), "shared", echo).await {
            Ok(_) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tally.failed.lock().expect("tally").push(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_loses_nothing() {
    let admin = pg_admin_url();
    let name = format!("pgroll_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("pg");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create db");
    let mut db = url::Url::parse(&admin).expect("url");
    db.set_path(&name);
    let up: Upstream = Upstream::start(([127, 0, 0, 1], 0).into(), UpstreamConfig::default())
        .await
        .expect("upstream");
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db.to_string()),
        ("REDIS_URL", redis_url()),
        ("REDIS_POOL_PREFIX", unique_prefix()),
        ("JWT_SECRET_KEY", SECRET.to_owned()),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("COORDINATOR_PORT", "0".to_owned()),
        ("SHUTDOWN_GRACE_SECONDS", "10".to_owned()),
        ("POOL_MANAGER_CLEANUP_INTERVAL", "1".to_owned()),
        ("REDIS_LEADER_TTL", "3".to_owned()),
        ("REDIS_LEADER_RENEW_DEADLINE", "2".to_owned()),
        ("REDIS_LEADER_HEARTBEAT_INTERVAL", "1".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let node_bin = std::path::PathBuf::from(NODE);
    let coord_bin = node_bin.with_file_name("poolgate-coordinator");
    assert!(coord_bin.exists(), "build the workspace first: {coord_bin:?}");
    let _coordinators: Vec<Proc> = (0..2).map(|_| Proc::start(&coord_bin, &env)).collect();
    let http = reqwest::Client::new();
    let lb = Arc::new(Balancer::default());
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let p = Proc::start(&node_bin, &env);
        let addr = p.addr("poolgate node listening").await;
        while !ready(&http, &addr).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lb.add(&addr);
        nodes.push((p, addr));
    }
    let key = JwtKey::new(SECRET.as_bytes());
    let token = |roles: &[&str]| {
        let now = now_unix();
        key.mint(&Claims {
            sub: "ops".into(),
            exp: now + 600,
            iat: Some(now),
            nbf: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            permissions: vec![],
        })
    };
    let admin_token = token(&["admin"]);
    for (id, iso) in [("sess", "session"), ("shared", "shared")] {
        let body = json!({"id": id, "name": id, "endpoints": [{"url": up.url()}], "pool_enabled": true,
            "pool_isolation": iso, "pool_max_size": 20, "pool_min_size": 0, "pool_lease_ttl": LEASE_TTL_S});
        let resp = http
            .post(format!("http://{}/api/servers", nodes[0].1))
            .bearer_auth(&admin_token)
            .json(&body)
            .send()
            .await
            .expect("register");
        assert_eq!(resp.status(), StatusCode::CREATED);
    }

    // Steady load: 6 clients.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(client(
                i,
                http.clone(),
                lb.clone(),
                token(&["reader"]),
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();
    let warm = Instant::now();
    while tally.ok.load(Ordering::Relaxed) < 60 {
        assert!(
            warm.elapsed() < Duration::from_secs(30),
            "load never got going: {:?}",
            tally.failed.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Rolling restart: out of rotation, a moment for the balancer (preStop), SIGTERM, exit 0,
    // a new node in once ready.
    for slot in nodes.iter_mut() {
        let old = slot.1.clone();
        lb.remove(&old);
        tokio::time::sleep(Duration::from_millis(200)).await;
        slot.0.signal("-TERM");
        let code = slot.0.exit_code(Duration::from_secs(15)).await;
        assert_eq!(code, Some(0), "node {old} exits 0 after draining");
        let p = Proc::start(&node_bin, &env);
        let addr = p.addr("poolgate node listening").await;
        while !ready(&http, &addr).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lb.add(&addr);
        *slot = (p, addr);
        let before = tally.ok.load(Ordering::Relaxed);
        while tally.ok.load(Ordering::Relaxed) < before + 30 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let failed = tally.failed.lock().expect("tally").clone();
    assert!(
        failed.is_empty(),
        "requests failed during the rolling restart: {failed:#?}"
    );
    assert_eq!(
        tally.broken.load(Ordering::Relaxed),
        0,
        "a session lost its upstream state"
    );
    let served = tally.ok.load(Ordering::Relaxed);

    // SIGKILL one node while it is in rotation: only what it was running fails.
    let victim = nodes[0].1.clone();
    nodes[0].0.signal("-KILL");
    let killed_at = Instant::now();
    let _ = nodes[0].0.exit_code(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the balancer's health check interval
    lb.remove(&victim);
    let after_kill = tally.ok.load(Ordering::Relaxed);
    while tally.ok.load(Ordering::Relaxed) < after_kill + 60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let failed = tally.failed.lock().expect("tally").clone();
    assert!(
        failed.iter().all(|f| f.starts_with(&victim)),
        "only the killed node's requests may fail: {failed:#?}"
    );
    assert_eq!(
        tally.broken.load(Ordering::Relaxed),
        0,
        "a session lost its upstream state"
    );

    // Capacity returns within the lease TTL (plus a cleanup pass): no lease left anywhere.
    let live = &nodes[1].1;
    let leases = |server: &'static str| {
        let (http, token, live) = (http.clone(), admin_token.clone(), live.clone());
        async move {
            let v: Value = http
                .get(format!("http://{live}/api/servers/{server}/pool/stats"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("stats")
                .json()
                .await
                .expect("json");
            v["leases"].as_u64().unwrap_or(u64::MAX)
        }
    };
    while leases("sess").await + leases("shared").await > 0 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(LEASE_TTL_S + 3),
            "leases left after the lease TTL: sess {} shared {}",
            leases("sess").await,
            leases("shared").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "rolling restart: {served} requests ok, 0 failed over 3 SIGTERM restarts; SIGKILL: {} failed on {victim}, {} ok in all",
        failed.len(),
        tally.ok.load(Ordering::Relaxed)
    );
    drop(nodes);
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
}
