//! `PUT/GET /api/servers/{id}/pool/config` and `GET /api/servers/pools`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{error_of, Backend, TestApp};

/// For every pool field, a value that breaks its rule (SPEC §2) or its type.
fn bad_values() -> Vec<(&'static str, Value)> {
    vec![
        ("pool_enabled", json!("yes")),
        ("pool_strategy", json!("fastest")),
        ("pool_strategy", json!(3)),
        ("pool_min_size", json!(-1)),
        ("pool_min_size", json!(11)), // above the current max of 10
        ("pool_min_size", json!(1.5)),
        ("pool_max_size", json!(0)),
        ("pool_max_size", json!("ten")),
        ("pool_timeout", json!(0)),
        ("pool_timeout", json!(-30)),
        ("pool_recycle_seconds", json!(0)),
        ("pool_pre_ping", json!(1)),
        ("pool_isolation", json!("none")),
        ("pool_session_capacity", json!(0)),
        ("pool_lease_ttl", json!(0)),
        ("pool_idle_ttl", json!(-5)),
        ("pool_idle_ttl", json!(null)),
    ]
}

async fn every_invalid_field_is_refused_and_nothing_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_server("s1", json!({})).await;
    let (_, before) = app.admin(Method::GET, "/api/servers/s1", None).await;
    for path in ["/api/servers/s1/pool/config", "/api/servers/s1"] {
        for (field, value) in bad_values() {
            // Send the bad value together with a valid change: nothing at all may be applied.
            let body = json!({ field: value, "pool_recycle_seconds": 7200 });
            let body = if field == "pool_recycle_seconds" {
                json!({ field: value, "pool_timeout": 5 })
            } else {
                body
            };
            let (status, err) = app.admin(Method::PUT, path, Some(body.clone())).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body} -> {err}");
            assert_eq!(error_of(&err).1.as_deref(), Some(field), "{path} {body} -> {err}");
            let (_, after) = app.admin(Method::GET, "/api/servers/s1", None).await;
            assert_eq!(after, before, "{path} {body} changed the stored row");
        }
    }
    app.stop().await;
}

async fn valid_changes_apply_partially(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_server("s1", json!({})).await;
    let (status, view) = app
        .admin(
            Method::PUT,
            "/api/servers/s1/pool/config",
            Some(json!({
                "pool_enabled": true, "pool_strategy": "weighted", "pool_min_size": 3, "pool_max_size": 15,
                "pool_timeout": 45, "pool_recycle_seconds": 7200, "pool_pre_ping": false,
                "pool_isolation": "shared", "pool_session_capacity": 4, "pool_lease_ttl": 90, "pool_idle_ttl": 600
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let expected = json!({
        "server_id": "s1", "name": "Server s1",
        "pool_enabled": true, "pool_strategy": "weighted", "pool_min_size": 3, "pool_max_size": 15,
        "pool_timeout": 45, "pool_recycle_seconds": 7200, "pool_pre_ping": false,
        "pool_isolation": "shared", "pool_session_capacity": 4, "pool_lease_ttl": 90, "pool_idle_ttl": 600,
        "pool_auto_optimize": false, "pool_max_sessions_per_user": "auto", "pool_max_inflight_per_user": "auto",
        "pool_unused_ttl": 60, "pool_rate_limit": 0, "pool_rate_burst": 0
    });
    assert_eq!(view, expected);
    // The seed's short names, partial: only max_size changes.
    let (status, view) = app
        .admin(
            Method::PUT,
            "/api/servers/s1/pool/config",
            Some(json!({"max_size": 20})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let mut expected = expected;
    expected["pool_max_size"] = json!(20);
    assert_eq!(view, expected);
    let (_, fetched) = app
        .call(
            Method::GET,
            "/api/servers/s1/pool/config",
            Some(&app.reader_token()),
            None,
        )
        .await;
    assert_eq!(fetched, expected, "stored");
    // Shrinking max below min names max.
    let (status, err) = app
        .admin(
            Method::PUT,
            "/api/servers/s1/pool/config",
            Some(json!({"pool_max_size": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&err).1.as_deref(), Some("pool_max_size"));
    // An empty body changes nothing and says so.
    let (status, err) = app
        .admin(Method::PUT, "/api/servers/s1/pool/config", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let (status, _) = app
        .admin(
            Method::PUT,
            "/api/servers/nope/pool/config",
            Some(json!({"pool_max_size": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn pools_export_lists_every_pool(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_server("a", json!({"pool_enabled": true, "pool_strategy": "sticky"}))
        .await;
    app.create_server("b", json!({"pool_max_size": 3, "pool_min_size": 0}))
        .await;
    let (status, pools) = app
        .call(Method::GET, "/api/servers/pools", Some(&app.reader_token()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let pools = pools.as_array().expect("array").clone();
    assert_eq!(pools.len(), 2);
    assert_eq!(
        (pools[0]["server_id"].clone(), pools[0]["pool_strategy"].clone()),
        (json!("a"), json!("sticky"))
    );
    assert_eq!(pools[0]["pool_enabled"], true);
    assert_eq!(
        (pools[1]["pool_max_size"].clone(), pools[1]["pool_min_size"].clone()),
        (json!(3), json!(0))
    );
    app.stop().await;
}

crate::on_both_backends!(
    every_invalid_field_is_refused_and_nothing_changes,
    valid_changes_apply_partially,
    pools_export_lists_every_pool
);
