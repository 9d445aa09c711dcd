//! `PUT /api/servers/bulk-update`: all servers or a list, all or nothing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{error_of, Backend, TestApp};

async fn snapshot(app: &TestApp) -> Value {
    app.admin(Method::GET, "/api/servers", None).await.1
}

async fn updates_all_or_listed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for id in ["a", "b", "c"] {
        app.create_server(id, json!({"pool_enabled": true})).await;
    }
    // The seed's rollback command: disable pooling everywhere.
    let (status, result) = app
        .admin(
            Method::PUT,
            "/api/servers/bulk-update",
            Some(json!({"pool_enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result, json!({"updated": 3, "server_ids": ["a", "b", "c"]}));
    let all = snapshot(&app).await;
    assert!(
        all.as_array().expect("list").iter().all(|s| s["pool_enabled"] == false),
        "{all}"
    );

    let (status, result) = app
        .admin(
            Method::PUT,
            "/api/servers/bulk-update",
            Some(json!({"server_ids": ["c", "a"], "pool_strategy": "sticky"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["updated"], 2);
    let strategies: Vec<Value> = snapshot(&app)
        .await
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["pool_strategy"].clone())
        .collect();
    assert_eq!(strategies, vec![json!("sticky"), json!("round_robin"), json!("sticky")]);
    app.stop().await;
}

async fn one_bad_id_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_server("a", json!({})).await;
    app.create_server("b", json!({})).await;
    let before = snapshot(&app).await;

    let (status, err) = app
        .admin(
            Method::PUT,
            "/api/servers/bulk-update",
            Some(json!({"server_ids": ["a", "ghost", "b"], "pool_enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap_or_default().contains("ghost"),
        "{err}"
    );
    assert_eq!(snapshot(&app).await, before, "unknown id: nothing changed");

    let (status, err) = app
        .admin(
            Method::PUT,
            "/api/servers/bulk-update",
            Some(json!({"server_ids": ["a", "b c"], "pool_enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(error_of(&err).1.as_deref(), Some("server_ids[1]"));
    assert_eq!(snapshot(&app).await, before, "malformed id: nothing changed");

    // Valid for "a" (max 10) but not for "b" (max 3): refused for both.
    app.admin(
        Method::PUT,
        "/api/servers/b/pool/config",
        Some(json!({"pool_max_size": 3, "pool_min_size": 0})),
    )
    .await;
    let before = snapshot(&app).await;
    let (status, err) = app
        .admin(
            Method::PUT,
            "/api/servers/bulk-update",
            Some(json!({"pool_min_size": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(error_of(&err).1.as_deref(), Some("pool_min_size"));
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("server b"),
        "{err}"
    );
    assert_eq!(snapshot(&app).await, before, "one server refusing: nothing changed");

    let (status, _) = app
        .admin(
            Method::PUT,
            "/api/servers/bulk-update",
            Some(json!({"pool_max_size": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .admin(
            Method::PUT,
            "/api/servers/bulk-update",
            Some(json!({"server_ids": ["a"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no pool field to change");
    assert_eq!(snapshot(&app).await, before);
    app.stop().await;
}

crate::on_both_backends!(updates_all_or_listed, one_bad_id_changes_nothing);
