//! Secrets never leak (SPEC §9): credentials inside endpoint URLs (user info, query values) are
//! hidden from readers, from the errors clients get and from the node's log; `/metrics` can
//! require a token; start-up refuses to open an unauthenticated node to the network by accident.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolgate_shared::auth::{now_unix, Claims, JwtKey};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{read, Backend, TestApp, TEST_SECRET};
use crate::peers::{free_loopback_addr, ChildGuard, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_poolgate-node");
const SECRET: &str = "SECRET-5be1c0de";

fn token(sub: &str, roles: &[&str]) -> String {
    JwtKey::new(TEST_SECRET.as_bytes()).mint(&Claims {
        sub: sub.into(),
        exp: now_unix() + 600,
        iat: None,
        nbf: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        permissions: vec![],
    })
}

/// The node binary with debug logs, a server whose endpoint URL carries credentials in its user
/// info and query, and that upstream unreachable: readers, the client's error and the whole log
/// never show them; an admin (who set them) does see the URL as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_credentials_reach_no_reader_client_or_log() {
    let dir = TempDir::new();
    let addr = free_loopback_addr();
    let db = dir.path().join("node.db");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", addr.port().to_string())
        .env("DATABASE_URL", format!("sqlite://{}?mode=rwc", db.display()))
        .env("JWT_SECRET_KEY", TEST_SECRET)
        .env("LOG_LEVEL", "debug")
        .env("POOL_MANAGER_HEALTH_CHECK_INTERVAL", "1")
        .env("POOL_MANAGER_CLEANUP_INTERVAL", "1")
        .stdin(Stdio::null());
    let node = ChildGuard::spawn("poolgate-node", cmd, &dir);
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the node never answered\n{}", node.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (admin, reader) = (token("ada", &["admin"]), token("rita", &["reader"]));
    let url = format!("http://user:pw-{SECRET}@127.0.0.1:9/mcp?api_key={SECRET}");
    let created = http
        .post(format!("{base}/api/servers"))
        .bearer_auth(&admin)
        .json(&json!({"id": "leaky", "name": "Leaky", "endpoints": [{"url": url}],
            "headers": {"Authorization": format!("Bearer {SECRET}")},
            "pool_enabled": true, "pool_min_size": 1}))
        .send()
        .await
        .expect("create");
    let (status, body) = read(created).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Readers see the endpoint without its credentials; the admin sees it as stored.
    for path in ["/api/servers/leaky", "/api/servers", "/api/servers/leaky/pool/sessions"] {
        let (status, body) = read(
            http.get(format!("{base}{path}"))
                .bearer_auth(&reader)
                .send()
                .await
                .expect("get"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(
            !body.to_string().contains(SECRET),
            "{path} shows a credential to a reader: {body}"
        );
    }
    let (_, shown) = read(
        http.get(format!("{base}/api/servers/leaky"))
            .bearer_auth(&reader)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        shown["endpoints"][0]["url"], "http://***:***@127.0.0.1:9/mcp?api_key=***",
        "{shown}"
    );
    let (_, full) = read(
        http.get(format!("{base}/api/servers/leaky"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(full["endpoints"][0]["url"], url.as_str(), "{full}");

    // A client of the unreachable upstream gets an error that names no credential.
    let answer = http
        .post(format!("{base}/servers/leaky/mcp"))
        .bearer_auth(&reader)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .expect("initialize");
    let text = answer.text().await.expect("body");
    let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(error["error"]["message"].is_string(), "{text}");
    assert!(!text.contains(SECRET), "the client's error shows a credential: {text}");
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(
        metrics.contains("mcp_gateway_circuit_breaker_state{server_id=\"leaky\""),
        "{metrics}"
    );
    assert!(!metrics.contains(SECRET), "a metric label shows a credential");

    // Let warm-up and a health pass try the upstream (and log their failures) too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.output().contains("warm-up") {
        assert!(Instant::now() < deadline, "warm-up never logged\n{}", node.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = node.output();
    assert!(log.contains("leaky"), "the log covers the server: {log}");
    assert!(!log.contains(SECRET), "the log shows a credential:\n{log}");
}

/// `METRICS_AUTH_REQUIRED=true`: `/metrics` wants a bearer token like the API (probes do not).
#[tokio::test]
async fn metrics_can_require_a_token() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("METRICS_AUTH_REQUIRED", "true")], &[]).await;
    let bare = app.client.get(app.url("/metrics")).send().await.expect("metrics");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "probes need no token");
    let with = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(app.reader_token())
        .send()
        .await
        .expect("metrics");
    assert_eq!(with.status(), StatusCode::OK);
    assert!(with.text().await.expect("text").contains("poolgate_build_info"));
    app.stop().await;
    // The default: scrapers on a private network need no token.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let bare = app.client.get(app.url("/metrics")).send().await.expect("metrics");
    assert_eq!(bare.status(), StatusCode::OK);
    app.stop().await;
}
