//! The audit file (`POOL_AUDIT_ENABLED`, `POOL_AUDIT_LOG_PATH`): one JSON line per committed
//! admin change, equal to the row `GET /api/audit` shows; a file rotated away is replaced by a
//! new one at the path; an unwritable path stops start-up naming the setting.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{base_env, config_from, Backend, TestApp, TestDb};

const SECRET: &str = "audit-file-header-secret";

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("poolgate-audit-file-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The file's lines, parsed, once there are `n` of them (they are written off the request path).
async fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= n {
            assert_eq!(lines.len(), n, "more lines than changes: {text}");
            assert!(text.ends_with('\n'), "every line is complete: {text:?}");
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{n} lines never arrived in {}: {text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every audit row, oldest first.
async fn audit_rows(app: &TestApp) -> Vec<Value> {
    let (status, rows) = app.admin(Method::GET, "/api/audit?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK, "{rows}");
    let mut rows = rows.as_array().expect("list").clone();
    rows.reverse();
    rows
}

async fn the_file_holds_every_committed_change(backend: Backend) {
    let dir = temp_dir();
    let path = dir.join("pool-audit.log");
    let app = TestApp::spawn_with(
        backend,
        &[
            ("POOL_AUDIT_ENABLED", "true"),
            ("POOL_AUDIT_LOG_PATH", path.to_str().expect("utf-8 path")),
        ],
        &[],
    )
    .await;
    app.create_server("a", json!({"headers": {"Authorization": format!("Bearer {SECRET}")}}))
        .await;
    let changes = [
        (
            Method::PUT,
            "/api/servers/a",
            Some(json!({"name": "A"})),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/api/servers/a/pool/config",
            Some(json!({"pool_max_size": 7})),
            StatusCode::OK,
        ),
        // Refused: no row, no line.
        (
            Method::PUT,
            "/api/servers/a/pool/config",
            Some(json!({"pool_max_size": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/servers/a/pool/drain",
            Some(json!({"timeout": 0})),
            StatusCode::OK,
        ),
        (Method::POST, "/api/servers/a/pool/reset", None, StatusCode::OK),
        (Method::DELETE, "/api/servers/a", None, StatusCode::NO_CONTENT),
    ];
    for (method, route, body, expected) in changes {
        let (status, resp) = app.admin(method.clone(), route, body).await;
        assert_eq!(status, expected, "{method} {route}: {resp}");
    }

    let rows = audit_rows(&app).await;
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        actions,
        [
            "server.create",
            "server.update",
            "pool.config",
            "pool.drain",
            "pool.reset",
            "server.delete"
        ]
    );
    let lines = wait_lines(&path, rows.len()).await;
    // Line for row: the same fields and values (id, at, actor, action, server_id, before, after).
    assert_eq!(lines, rows);
    assert!(rows.iter().all(|r| r["actor"] == "alice" && r["server_id"] == "a"));
    // Drain and reset record the pool's figures around the operation.
    let drain = &rows[3];
    assert!(drain["after"]["marked_draining"].is_u64(), "{drain}");
    assert_eq!(drain["after"]["timeout"], 0);
    assert!(drain["before"]["total_sessions"].is_u64(), "{drain}");
    assert!(rows[4]["after"]["retired"].is_u64(), "{}", rows[4]);
    // Header values stay redacted in the file as in the table.
    let text = std::fs::read_to_string(&path).expect("audit file");
    assert!(!text.contains(SECRET), "a header value leaked into the audit file");
    assert!(text.contains("[redacted]"));

    // Rotated away (renamed, as logrotate does): the next change starts a new file at the path.
    std::fs::rename(&path, dir.join("pool-audit.log.1")).expect("rotate");
    app.create_server("b", json!({})).await;
    let rows = audit_rows(&app).await;
    let fresh = wait_lines(&path, 1).await;
    assert_eq!(fresh[0], rows[rows.len() - 1]);
    assert_eq!(fresh[0]["action"], "server.create");
    assert_eq!(wait_lines(&dir.join("pool-audit.log.1"), 6).await, lines);

    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

crate::on_both_backends!(the_file_holds_every_committed_change);

/// An operator who enabled the audit file learns at once that it cannot be written.
#[tokio::test]
async fn an_unwritable_audit_path_stops_start_up() {
    let dir = temp_dir();
    let bad = dir.join("no-such-dir").join("pool-audit.log");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut env = base_env(&db);
    env.insert("POOL_AUDIT_ENABLED".into(), "true".into());
    env.insert("POOL_AUDIT_LOG_PATH".into(), bad.display().to_string());
    let err = match poolgate_node::app::Node::bind(config_from(&env)).await {
        Ok(_) => panic!("a node started with an unwritable audit file"),
        Err(e) => e,
    };
    let message = format!("{err:#}");
    assert!(
        message.contains("POOL_AUDIT_LOG_PATH") && message.contains(&bad.display().to_string()),
        "{message}"
    );
    assert!(err.downcast_ref::<poolgate_shared::config::ConfigError>().is_some());

    // The binary exits 2, like any other invalid setting.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_poolgate-node"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", "sqlite::memory:")
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("POOL_AUDIT_ENABLED", "true")
        .env("POOL_AUDIT_LOG_PATH", &bad)
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("POOL_AUDIT_LOG_PATH"), "{stderr}");
    db.drop_now().await;
    let _ = std::fs::remove_dir_all(dir);
}
