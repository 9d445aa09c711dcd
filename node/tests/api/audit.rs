//! Every admin change leaves one audit row — who, what, before, after — and refused ones none.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn every_change_is_audited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_server("a", json!({})).await;
    app.create_server("b", json!({})).await;
    let otto = app.token("otto", &["operator"], &[], 600);
    let changes = [
        (Method::PUT, "/api/servers/a", json!({"name": "A"})),
        (Method::PUT, "/api/servers/a/pool/config", json!({"pool_max_size": 7})),
        (Method::PUT, "/api/servers/bulk-update", json!({"pool_enabled": true})),
    ];
    for (method, path, body) in changes {
        let (status, resp) = app.call(method, path, Some(&otto), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
    }
    // Refused changes leave nothing.
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/servers/a/pool/config",
            Some(&otto),
            Some(json!({"pool_max_size": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.admin(Method::DELETE, "/api/servers/a", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, rows) = app.admin(Method::GET, "/api/audit?server_id=a", None).await;
    assert_eq!(status, StatusCode::OK);
    let rows = rows.as_array().expect("list").clone();
    let summary: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("server.delete", "alice"),
        ("pool.bulk_update", "otto"),
        ("pool.config", "otto"),
        ("server.update", "otto"),
        ("server.create", "alice"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(summary, expected);
    // Before and after hold the states around each change.
    assert_eq!(rows[4]["before"], json!(null));
    assert_eq!(rows[4]["after"]["name"], "Server a");
    assert_eq!(
        (rows[3]["before"]["name"].clone(), rows[3]["after"]["name"].clone()),
        (json!("Server a"), json!("A"))
    );
    assert_eq!(
        (
            rows[2]["before"]["pool_max_size"].clone(),
            rows[2]["after"]["pool_max_size"].clone()
        ),
        (json!(10), json!(7))
    );
    assert_eq!(
        (
            rows[1]["before"]["pool_enabled"].clone(),
            rows[1]["after"]["pool_enabled"].clone()
        ),
        (json!(false), json!(true))
    );
    assert_eq!(
        (rows[0]["before"]["name"].clone(), rows[0]["after"].clone()),
        (json!("A"), json!(null))
    );
    assert!(rows
        .iter()
        .all(|r| r["at"].as_str().is_some_and(|t| t.starts_with("20"))));
    // The bulk update wrote one row per server.
    let (_, rows_b) = app.admin(Method::GET, "/api/audit?server_id=b", None).await;
    assert_eq!(rows_b.as_array().map(Vec::len), Some(2));
    // Reading the audit log is for admins.
    let (status, _) = app
        .call(Method::GET, "/api/audit", Some(&app.reader_token()), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

crate::on_both_backends!(every_change_is_audited);
