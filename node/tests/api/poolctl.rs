//! The `poolctl` binary against a running node: `health` exit codes 0/1/2 (2 also unreachable)
//! like seed 000's check-pool-health.sh, human tables and `--json`, refused input reported.

use std::process::Command;

use poolgate_control::ControlPlane;
use poolgate_loadtests::upstream::UpstreamConfig;
use poolgate_shared::domain::server::ServerId;
use serde_json::{json, Value};

use crate::helpers::{base_env, config_from, redis_url, TestApp};
use crate::mcp_client::{register, two_nodes, unique_prefix, upstream, Client};

const BIN: &str = env!("CARGO_BIN_EXE_poolctl");

/// Runs poolctl against `app` with an admin token; returns (exit code, stdout, stderr). The
/// process runs off the test's runtime, which must keep serving the node poolctl talks to.
pub(crate) async fn poolctl(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("POOLGATE_URL", app.url(""))
        .env("POOLGATE_TOKEN", app.admin_token());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("poolctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn health_exit_codes_follow_the_pools_health() {
    let up = upstream(UpstreamConfig::default()).await;
    let prefix = unique_prefix();
    let (a, b) = two_nodes(&prefix, &[]).await;
    register(
        &a,
        "ctl",
        &up.url(),
        json!({"pool_max_size": 2, "pool_isolation": "shared"}),
    )
    .await;
    let mut c = Client::new(&a, "ctl", "alice");
    c.initialize().await;
    c.call_ok(1, "echo", json!({"text": "hi"})).await;

    let (code, out, _) = poolctl(&a, &["health"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: All pools healthy"), "{out}");

    // The control plane the nodes share, to record timeouts as an overloaded fleet would.
    let mut env = base_env(&a.db);
    env.insert("REDIS_URL".into(), redis_url());
    env.insert("REDIS_POOL_PREFIX".into(), prefix.clone());
    let plane = ControlPlane::from_config(&config_from(&env)).expect("plane");
    // The client connects in the background; wait for it like the nodes' readiness does.
    for _ in 0..200 {
        if plane.ping().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pool = ServerId::parse("ctl").expect("id");
    let acquisitions = plane.stats(&pool).await.expect("stats").acquisitions;
    assert!(acquisitions >= 2);
    // Timeouts on a third of the acquisitions: score 0.67, degraded.
    for _ in 0..acquisitions.div_ceil(3) {
        plane.note_timeout(&pool).await.expect("timeout");
    }
    let (code, out, _) = poolctl(&a, &["health"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("WARNING: 1 pools degraded"), "{out}");
    // As many timeouts as acquisitions: score 0, unhealthy.
    for _ in 0..acquisitions {
        plane.note_timeout(&pool).await.expect("timeout");
    }
    let (code, out, _) = poolctl(&b, &["health", "--json"]).await;
    assert_eq!(code, 2, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (v["overall_health"].as_str(), v["degraded_pools"].as_u64()),
        (Some("unhealthy"), Some(1))
    );

    // Nothing listening: critical, exit 2 (as seed 000's script), saying why.
    let out = Command::new(BIN)
        .args(["--url", "http://127.0.0.1:9", "health"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway"));
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn commands_show_tables_json_and_refusals() {
    let up = upstream(UpstreamConfig::default()).await;
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    register(&a, "tool", &up.url(), json!({"pool_max_size": 3})).await;
    register(&a, "other", &up.url(), json!({"pool_max_size": 3})).await;

    let (code, out, _) = poolctl(&a, &["servers"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("id") && lines[0].contains("pool_strategy"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "header and two servers: {out}");

    let (code, out, err) = poolctl(&a, &["config-set", "tool", "pool_strategy=sticky", "pool_max_size=7"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pool_strategy") && out.contains("sticky"), "{out}");
    let (_, out, _) = poolctl(&b, &["--json", "config", "tool"]).await;
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (v["pool_strategy"].as_str(), v["pool_max_size"].as_u64()),
        (Some("sticky"), Some(7))
    );

    // Refused by the API: exit 1 with the API's message naming the field; nothing changed.
    let (code, _, err) = poolctl(&a, &["config-set", "tool", "pool_max_size=0"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("pool_max_size"), "{err}");
    // Bad usage: exit 2.
    assert_eq!(poolctl(&a, &["config-set", "tool", "nonsense"]).await.0, 2);
    assert_eq!(poolctl(&a, &["frobnicate"]).await.0, 2);

    let (code, out, err) = poolctl(&a, &["bulk-update", "--server-ids", "tool,other", "pool_enabled=false"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("updated 2 servers"), "{out}");
    let (_, out, _) = poolctl(&a, &["--json", "pools"]).await;
    let pools: Value = serde_json::from_str(&out).expect("json");
    assert!(
        pools
            .as_array()
            .expect("array")
            .iter()
            .all(|p| p["pool_enabled"] == false),
        "{pools}"
    );

    let (code, out, _) = poolctl(&a, &["--json", "stats", "tool"]).await;
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(stats["server_id"], "tool");
    let (code, out, _) = poolctl(&a, &["optimize", "tool"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("not enough traffic"), "{out}");
    let (code, out, _) = poolctl(&a, &["drain", "tool", "--timeout", "1"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("drained"), "{out}");
    let (code, _, _) = poolctl(&a, &["reset", "tool"]).await;
    assert_eq!(code, 0);
    b.stop().await;
    a.stop().await;
}
