//! Leader election between real `poolgate-coordinator` processes on Redis and PostgreSQL:
//! SIGKILL the leader → another leads within TTL + one heartbeat; SIGSTOP a leader past its TTL →
//! another leads, and when the old one resumes it finds its leadership lost and stops acting.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection as _;

const BIN: &str = env!("CARGO_BIN_EXE_poolgate-coordinator");
const TTL_S: u64 = 3;
const HEARTBEAT_S: u64 = 1;

struct Coordinator {
    child: Child,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Coordinator {
    fn start(env: &[(&str, String)]) -> Coordinator {
        let mut cmd = Command::new(BIN);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("coordinator starts");
        let log: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let sink = log.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push((Instant::now(), line));
                }
            }
        });
        Coordinator { child, log }
    }

    fn saw(&self, needle: &str, since: Instant) -> Option<Instant> {
        self.log
            .lock()
            .ok()?
            .iter()
            .find(|(at, l)| *at >= since && l.contains(needle))
            .map(|(at, _)| *at)
    }

    /// Where its probes listen, from its start-up log line.
    fn addr(&self) -> String {
        wait_for("the probes' address", Duration::from_secs(10), || {
            let log = self.log.lock().ok()?;
            let line = log.iter().find(|(_, l)| l.contains("probes and metrics listening"))?;
            let rest = line.1.split("addr=").nth(1)?;
            Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
        })
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "kill {sig}");
    }
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_pause_the_leader() {
    let admin = std::env::var("POOLGATE_TEST_PG_URL").expect("POOLGATE_TEST_PG_URL: run scripts/test.sh");
    let redis = std::env::var("POOLGATE_TEST_REDIS_URL").expect("POOLGATE_TEST_REDIS_URL: run scripts/test.sh");
    let name = format!("pgcoord_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("pg");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create db");
    let mut db = url::Url::parse(&admin).expect("url");
    db.set_path(&name);
    let env = vec![
        ("DATABASE_URL", db.to_string()),
        ("REDIS_URL", redis),
        ("REDIS_POOL_PREFIX", format!("pgcoord:{}:", &name[8..20])),
        ("JWT_SECRET_KEY", "coordinator-test-secret-coordinator-test".to_owned()),
        ("REDIS_LEADER_TTL", TTL_S.to_string()),
        ("REDIS_LEADER_RENEW_DEADLINE", "2".to_owned()),
        ("REDIS_LEADER_HEARTBEAT_INTERVAL", HEARTBEAT_S.to_string()),
        ("LOG_LEVEL", "info".to_owned()),
        ("COORDINATOR_PORT", "0".to_owned()),
        ("HOST", "127.0.0.1".to_owned()),
    ];
    let start = Instant::now();
    let mut coords: Vec<Option<Coordinator>> = (0..3).map(|_| Some(Coordinator::start(&env))).collect();
    let leaders = |coords: &[Option<Coordinator>], since: Instant| -> Vec<usize> {
        coords
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref()?.saw("became leader", since).map(|_| i))
            .collect()
    };
    let first = wait_for("a first leader", Duration::from_secs(20), || {
        leaders(&coords, start).first().copied()
    });
    std::thread::sleep(Duration::from_secs(HEARTBEAT_S * 2));
    assert_eq!(leaders(&coords, start), vec![first], "exactly one leader");
    // Each coordinator's /metrics tells whether it leads, and all agree on the term.
    let mut terms = Vec::new();
    for (i, c) in coords.iter().enumerate() {
        let c = c.as_ref().expect("alive");
        let addr = c.addr();
        let http = reqwest::Client::new();
        let ready = http.get(format!("http://{addr}/ready")).send().await.expect("ready");
        assert_eq!(ready.status(), 200);
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        let leading = text
            .lines()
            .any(|l| l.starts_with("poolgate_coordinator_is_leader{") && l.ends_with(" 1"));
        assert_eq!(leading, i == first, "coordinator {i}: {text}");
        terms.push(
            text.lines()
                .find(|l| l.starts_with("poolgate_leader_term "))
                .map(str::to_owned),
        );
    }
    assert!(terms.iter().all(|t| t.is_some() && *t == terms[0]), "{terms:?}");

    // SIGKILL the leader: another leads within TTL + one heartbeat.
    let killed = Instant::now();
    coords[first].as_ref().expect("alive").signal("-KILL");
    coords[first] = None;
    let second = wait_for("a takeover", Duration::from_secs(TTL_S + HEARTBEAT_S + 5), || {
        leaders(&coords, killed).first().copied()
    });
    let took = coords[second]
        .as_ref()
        .and_then(|c| c.saw("became leader", killed))
        .expect("seen")
        - killed;
    println!("takeover after SIGKILL: {took:?}");
    assert!(
        took <= Duration::from_secs(TTL_S + HEARTBEAT_S) + Duration::from_millis(500),
        "took {took:?}"
    );

    // SIGSTOP the new leader past its TTL: the third takes over; on SIGCONT the old one finds its
    // leadership lost (its renew is refused) and stops acting.
    let paused = Instant::now();
    coords[second].as_ref().expect("alive").signal("-STOP");
    let third = wait_for(
        "a takeover from the paused leader",
        Duration::from_secs(TTL_S + HEARTBEAT_S + 5),
        || leaders(&coords, paused).into_iter().find(|i| *i != second),
    );
    let resumed = Instant::now();
    coords[second].as_ref().expect("alive").signal("-CONT");
    wait_for(
        "the resumed leader to step down",
        Duration::from_secs(HEARTBEAT_S * 4 + 2),
        || coords[second].as_ref()?.saw("leadership lost", resumed),
    );
    std::thread::sleep(Duration::from_secs(HEARTBEAT_S * 2));
    assert!(
        coords[second]
            .as_ref()
            .and_then(|c| c.saw("became leader", resumed))
            .is_none(),
        "the resumed coordinator must not lead again while the new leader lives"
    );
    assert!(
        coords[third]
            .as_ref()
            .and_then(|c| c.saw("leadership lost", paused))
            .is_none(),
        "the new leader keeps leading"
    );
    drop(coords);
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
}
