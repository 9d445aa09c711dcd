//! The `poolgate-node` binary: configuration errors stop start-up naming the key; `token` and
//! `migrate` work against the configured database.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, TestApp, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_poolgate-node");

/// Runs the binary in an empty temp dir with only `env` (plus PATH) set.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("poolgate-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("binary runs");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_settings_stop_start_up_naming_the_key() {
    for (key, value) in [
        ("PORT", "eighty"),
        ("POOL_DEFAULT_MAX_SIZE", "0"),
        ("POOL_DEFAULT_STRATEGY", "random"),
        ("POOL_MANAGER_CLEANUP_INTERVAL", "0"),
        ("LOG_LEVEL", "verbose"),
        ("REDIS_POOL_PREFIX", "{x}"),
    ] {
        let (code, stdout, stderr) = run(&[], &[(key, value), ("DATABASE_URL", "sqlite::memory:")]);
        assert_eq!(code, 2, "{key}={value}: {stdout} {stderr}");
        assert!(stderr.contains(key), "{key}={value}: {stderr}");
    }
    // Distributed mode without PostgreSQL.
    let (code, _, stderr) = run(
        &[],
        &[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("JWT_SECRET_KEY", &"k".repeat(32)),
        ],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    // An unknown key in the config file.
    let yaml = std::env::temp_dir().join(format!("poolgate-cli-{}.yaml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&yaml, "pooling:\n  defaults:\n    max_sise: 3\n").expect("write yaml");
    let (code, _, stderr) = run(&[], &[("POOLGATE_CONFIG", yaml.to_str().unwrap_or_default())]);
    let _ = std::fs::remove_file(&yaml);
    assert_eq!(code, 2);
    assert!(stderr.contains("pooling.defaults.max_sise"), "{stderr}");
    // No tokens on a node listening beyond this machine: refused unless asked for explicitly.
    let (code, _, stderr) = run(&[], &[("AUTH_REQUIRED", "false"), ("DATABASE_URL", "sqlite::memory:")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("AUTH_REQUIRED") && stderr.contains("ALLOW_INSECURE_AUTH_OFF") && stderr.contains("0.0.0.0"),
        "{stderr}"
    );
    // Bad usage.
    let (code, _, stderr) = run(&["migrate", "sideways"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("usage"), "{stderr}");
}

/// The embedded node without `JWT_SECRET_KEY`: `poolgate-node token` mints a token from the
/// secret the node generated and stored, and the running node accepts it.
#[tokio::test]
async fn token_command_works_with_the_generated_secret() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[], &["JWT_SECRET_KEY"]).await;
    let url = app.db.url.clone();
    let (code, token, stderr) = tokio::task::spawn_blocking(move || {
        run(
            &["token", "--sub", "ops", "--role", "admin", "--exp", "5"],
            &[("DATABASE_URL", &url)],
        )
    })
    .await
    .expect("joined");
    assert_eq!(code, 0, "{stderr}");
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "stdout is only the token: {token:?}");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/servers",
            Some(token),
            Some(json!({"id": "t", "name": "t", "endpoints": [{"url": "http://127.0.0.1:9/mcp"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn migrate_commands_round_trip() {
    let db = TestDb::new(Backend::Sqlite).await;
    let url = db.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let env = [("DATABASE_URL", url.as_str())];
        [
            run(&["migrate", "status"], &env),
            run(&["migrate", "up"], &env),
            run(&["migrate", "down"], &env),
            run(&["migrate", "up"], &env),
        ]
    })
    .await
    .expect("joined");
    for (code, _, stderr) in &out {
        assert_eq!(*code, 0, "{stderr}");
    }
    let count = |s: &str, word: &str| s.lines().filter(|l| l.contains(word)).count();
    assert_eq!(count(&out[0].1, "applied"), 0, "{}", out[0].1);
    let total = count(&out[0].1, "pending");
    assert!(total >= 6);
    assert_eq!(count(&out[1].1, "applied"), total, "{}", out[1].1);
    assert!(out[2].1.contains("reverted"), "{}", out[2].1);
    assert_eq!(count(&out[2].1, "pending"), 1, "{}", out[2].1);
    assert_eq!(count(&out[3].1, "applied"), total, "{}", out[3].1);
    db.drop_now().await;
}
