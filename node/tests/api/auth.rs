//! The auth matrix: who may read and who may write.

use poolgate_shared::auth::{now_unix, Claims, JwtKey};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{error_of, Backend, TestApp};

fn new_server(id: &str) -> serde_json::Value {
    json!({"id": id, "name": id, "endpoints": [{"url": "http://127.0.0.1:9/mcp"}]})
}

async fn matrix(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other_key = JwtKey::new(b"some-other-secret-some-other-secret-xyz");
    let forged = other_key.mint(&Claims {
        sub: "mallory".into(),
        exp: now_unix() + 600,
        iat: None,
        nbf: None,
        roles: vec!["admin".into()],
        permissions: vec![],
    });
    let expired = app.token("alice", &["admin"], &[], -3600);
    let reader = app.reader_token();
    let operator = app.token("otto", &["operator"], &[], 600);
    let permitted = app.token("pat", &[], &["servers.update"], 600);

    // Writes.
    for (token, expected, label) in [
        (None, StatusCode::UNAUTHORIZED, "no token"),
        (Some(forged.as_str()), StatusCode::UNAUTHORIZED, "bad signature"),
        (Some(expired.as_str()), StatusCode::UNAUTHORIZED, "expired"),
        (Some("not.a.jwt"), StatusCode::UNAUTHORIZED, "garbage"),
        (Some(reader.as_str()), StatusCode::FORBIDDEN, "reader writes"),
    ] {
        let (status, body) = app
            .call(Method::POST, "/api/servers", token, Some(new_server("w")))
            .await;
        assert_eq!(status, expected, "{label}: {body}");
        let (code, _) = error_of(&body);
        assert_eq!(
            code,
            if expected == StatusCode::FORBIDDEN {
                "forbidden"
            } else {
                "unauthorized"
            }
        );
    }
    let (_, list) = app.admin(Method::GET, "/api/servers", None).await;
    assert_eq!(list, json!([]), "no refused write got through");

    for (i, token) in [app.admin_token(), operator, permitted].iter().enumerate() {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/servers",
                Some(token),
                Some(new_server(&format!("s{i}"))),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // Reads need a valid token of any role.
    let (status, _) = app.call(Method::GET, "/api/servers", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.call(Method::GET, "/api/servers/s0", Some(&expired), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app.call(Method::GET, "/api/servers", Some(&reader), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(3));
    // Reader on every admin write path.
    for (method, path, body) in [
        (Method::PUT, "/api/servers/s0", json!({"name": "x"})),
        (Method::PUT, "/api/servers/s0/pool/config", json!({"pool_max_size": 5})),
        (Method::PUT, "/api/servers/bulk-update", json!({"pool_enabled": true})),
        (Method::DELETE, "/api/servers/s0", json!(null)),
    ] {
        let (status, _) = app.call(method.clone(), path, Some(&reader), Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }

    // The 401 carries a Bearer challenge; the scheme must be Bearer.
    let resp = app
        .client
        .get(app.url("/api/servers"))
        .header("Authorization", "Basic YTpi")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    // Probes are open.
    let (status, _) = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

async fn auth_off_opens_everything(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("AUTH_REQUIRED", "false")], &[]).await;
    let (status, body) = app
        .call(Method::POST, "/api/servers", None, Some(new_server("open")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/servers/open/pool/config",
            None,
            Some(json!({"pool_enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, audit) = app.call(Method::GET, "/api/audit?server_id=open", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(audit[0]["actor"], "anonymous");
    app.stop().await;
}

crate::on_both_backends!(matrix, auth_off_opens_everything);

/// With `JWT_ISSUER` and `JWT_AUDIENCE` set, a token for another audience or from another issuer
/// gets 401 naming the claim; the node's own tokens (minted with both) pass.
#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("JWT_ISSUER", "https://idp.example"), ("JWT_AUDIENCE", "poolgate")],
        &[],
    )
    .await;
    let claims = Claims {
        sub: "alice".into(),
        exp: now_unix() + 600,
        iat: None,
        nbf: None,
        roles: vec!["admin".into()],
        permissions: vec![],
    };
    let secret = crate::helpers::TEST_SECRET.as_bytes();
    let foreign_aud = JwtKey::new(secret)
        .expecting(Some("https://idp.example"), Some("other"))
        .mint(&claims);
    let foreign_iss = JwtKey::new(secret)
        .expecting(Some("https://evil.example"), Some("poolgate"))
        .mint(&claims);
    let bare = JwtKey::new(secret).mint(&claims);
    for (token, claim) in [(&foreign_aud, "aud"), (&foreign_iss, "iss"), (&bare, "iss")] {
        let (status, body) = app.call(Method::GET, "/api/servers", Some(token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(error_of(&body).0, "unauthorized", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("{claim} claim")), "{claim}: {body}");
    }
    let (status, body) = app
        .call(Method::GET, "/api/servers", Some(&app.admin_token()), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}
