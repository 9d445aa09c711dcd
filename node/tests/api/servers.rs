//! Server registration: create, read, update, delete; upstream header values never leave.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{error_of, Backend, TestApp};

const SECRET_VALUE: &str = "upstream-secret-value-7f3a";

async fn crud(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app
        .create_server(
            "server-1",
            json!({
                "endpoints": [{"url": "http://127.0.0.1:9001/mcp", "weight": 3}, {"url": "http://127.0.0.1:9002/mcp"}],
                "headers": {"X-Api-Key": SECRET_VALUE},
                "pool_strategy": "least_connections",
                "pool_max_size": 15,
            }),
        )
        .await;
    assert_eq!(created["id"], "server-1");
    assert_eq!(created["endpoints"][0]["weight"], 3);
    assert_eq!(created["endpoints"][1]["weight"], 1, "weight defaults to 1");
    assert_eq!(created["pool_strategy"], "least_connections");
    assert_eq!(created["pool_max_size"], 15);
    assert_eq!(created["pool_min_size"], 1, "unset fields take the defaults");
    assert_eq!(created["pool_enabled"], false);
    assert_eq!(created["pool_isolation"], "session");
    assert_eq!(created["headers"], json!({"x-api-key": "[redacted]"}));

    let (status, fetched) = app
        .call(Method::GET, "/api/servers/server-1", Some(&app.reader_token()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created, "what was stored is what was returned");

    let (status, dup) = app
        .admin(
            Method::POST,
            "/api/servers",
            Some(json!({"id": "server-1", "name": "again", "endpoints": [{"url": "http://127.0.0.1:1/"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_of(&dup).0, "conflict");

    let (status, updated) = app
        .admin(
            Method::PUT,
            "/api/servers/server-1",
            Some(json!({"name": "Renamed", "endpoints": [{"url": "https://mcp.example.test/mcp"}], "pool_enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(
        updated["endpoints"],
        json!([{"url": "https://mcp.example.test/mcp", "weight": 1}])
    );
    assert_eq!(updated["pool_enabled"], true);
    assert_eq!(updated["pool_max_size"], 15, "a partial update keeps the other fields");
    assert_eq!(
        updated["headers"],
        json!({"x-api-key": "[redacted]"}),
        "headers kept when not sent"
    );

    // A second server without an id gets a generated one.
    let (status, generated) = app
        .admin(
            Method::POST,
            "/api/servers",
            Some(json!({"name": "anon", "endpoints": [{"url": "http://127.0.0.1:2/mcp"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{generated}");
    let generated_id = generated["id"].as_str().expect("id").to_owned();
    assert_eq!(generated_id.len(), 32);

    let (status, list) = app
        .call(Method::GET, "/api/servers", Some(&app.reader_token()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    let mut expected = vec![generated_id.as_str(), "server-1"];
    expected.sort();
    assert_eq!(ids, expected);

    let (status, body) = app.admin(Method::DELETE, "/api/servers/server-1", None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, serde_json::Value::Null));
    let (status, body) = app.admin(Method::GET, "/api/servers/server-1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&body).0, "not_found");
    let (status, _) = app.admin(Method::DELETE, "/api/servers/server-1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .admin(Method::PUT, "/api/servers/server-1", Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn invalid_registrations_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ok_endpoints = json!([{"url": "http://127.0.0.1:9/mcp"}]);
    let cases = vec![
        (json!({"id": "bad id", "name": "x", "endpoints": ok_endpoints}), "id"),
        (json!({"id": "pools", "name": "x", "endpoints": ok_endpoints}), "id"),
        (json!({"id": "a{b}", "name": "x", "endpoints": ok_endpoints}), "id"),
        (json!({"name": "", "endpoints": ok_endpoints}), "name"),
        (json!({"name": "x", "endpoints": []}), "endpoints"),
        (
            json!({"name": "x", "endpoints": [{"url": "not a url"}]}),
            "endpoints[0].url",
        ),
        (
            json!({"name": "x", "endpoints": [{"url": "ftp://h/x"}]}),
            "endpoints[0].url",
        ),
        (
            json!({"name": "x", "endpoints": [{"url": "http://h/x", "weight": 0}]}),
            "endpoints[0].weight",
        ),
        (
            json!({"name": "x", "endpoints": ok_endpoints, "headers": {"Mcp-Session-Id": "x"}}),
            "headers.Mcp-Session-Id",
        ),
        (
            json!({"name": "x", "endpoints": ok_endpoints, "pool_max_size": 0}),
            "pool_max_size",
        ),
        (
            json!({"name": "x", "endpoints": ok_endpoints, "colour": "blue"}),
            "colour",
        ),
        (json!({"endpoints": ok_endpoints}), "name"),
    ];
    for (body, field) in cases {
        let (status, err) = app.admin(Method::POST, "/api/servers", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {err}");
        let (_, got) = error_of(&err);
        // A missing field is reported without a path by serde; its name is in the message.
        match got {
            Some(f) => assert_eq!(f, field, "{body} -> {err}"),
            None => assert!(
                err["error"]["message"].as_str().unwrap_or_default().contains(field),
                "{err}"
            ),
        }
    }
    let (_, list) = app.admin(Method::GET, "/api/servers", None).await;
    assert_eq!(list, json!([]), "nothing was created");
    app.stop().await;
}

/// Every response that describes a server shows header names, never values.
async fn upstream_headers_never_appear_in_responses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut bodies = Vec::new();
    let (s, b) = app
        .admin(
            Method::POST,
            "/api/servers",
            Some(json!({"id": "h1", "name": "h", "endpoints": [{"url": "http://127.0.0.1:9/mcp"}], "headers": {"Authorization": format!("Bearer {SECRET_VALUE}")}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    bodies.push(b);
    for (method, path, body) in [
        (Method::GET, "/api/servers/h1", None),
        (Method::GET, "/api/servers", None),
        (Method::GET, "/api/servers/pools", None),
        (Method::GET, "/api/servers/h1/pool/config", None),
        (Method::PUT, "/api/servers/h1", Some(json!({"name": "h2"}))),
        (
            Method::PUT,
            "/api/servers/h1/pool/config",
            Some(json!({"pool_max_size": 4})),
        ),
        (
            Method::PUT,
            "/api/servers/bulk-update",
            Some(json!({"pool_enabled": true})),
        ),
        (
            Method::PUT,
            "/api/servers/h1",
            Some(json!({"headers": {"X-Other": format!("{SECRET_VALUE}-2")}})),
        ),
        (Method::GET, "/api/audit", None),
        (Method::DELETE, "/api/servers/h1", None),
        (Method::GET, "/api/audit?server_id=h1", None),
    ] {
        let (status, body) = app.admin(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        bodies.push(body);
    }
    for body in bodies {
        let text = body.to_string();
        assert!(!text.contains(SECRET_VALUE), "secret leaked: {text}");
    }
    app.stop().await;
}

crate::on_both_backends!(
    crud,
    invalid_registrations_name_the_field,
    upstream_headers_never_appear_in_responses
);
