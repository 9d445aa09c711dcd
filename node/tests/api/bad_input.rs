//! Malformed requests get a JSON 4xx naming the problem, and change nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{error_of, read, Backend, TestApp};

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .bearer_auth(app.admin_token())
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    read(req.send().await.expect("sent")).await
}

async fn malformed_requests(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("ADMIN_BODY_LIMIT", "4096")], &[]).await;
    app.create_server("s1", json!({})).await;
    let (_, before) = app.admin(Method::GET, "/api/servers", None).await;
    let json_ct = Some("application/json");
    // (method, path, content type, body, expected status, error code, error field)
    type Case<'a> = (
        Method,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/servers",
            json_ct,
            b"{\"name\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            Method::POST,
            "/api/servers",
            json_ct,
            b"{\"name\": \"x\"} trailing".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            Method::POST,
            "/api/servers",
            json_ct,
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            Method::POST,
            "/api/servers",
            json_ct,
            b"[1, 2]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            None,
        ),
        (
            Method::POST,
            "/api/servers",
            json_ct,
            br#"{"name": 5, "endpoints": []}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("name"),
        ),
        (
            Method::POST,
            "/api/servers",
            json_ct,
            br#"{"name": "x", "endpoints": [{"url": 1}]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("endpoints[0].url"),
        ),
        (
            Method::POST,
            "/api/servers",
            json_ct,
            br#"{"name": "x", "endpoints": [{"url": "http://a/", "wieght": 2}]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("endpoints[0].wieght"),
        ),
        (
            Method::PUT,
            "/api/servers/s1/pool/config",
            json_ct,
            br#"{"pool_max_size": "10"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("pool_max_size"),
        ),
        (
            Method::PUT,
            "/api/servers/s1/pool/config",
            json_ct,
            br#"{"pool_maxsize": 10}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("pool_maxsize"),
        ),
        (
            Method::PUT,
            "/api/servers/s1",
            json_ct,
            br#"{"name": null}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("name"),
        ),
        (
            Method::PUT,
            "/api/servers/s1",
            Some("text/plain"),
            b"name=x".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            Method::PUT,
            "/api/servers/s1",
            json_ct,
            format!("{{\"name\": \"{}\"}}", "x".repeat(10_000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
        (
            Method::PUT,
            "/api/servers/bulk-update",
            json_ct,
            br#"{"server_ids": "a", "pool_enabled": true}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("server_ids"),
        ),
        (
            Method::GET,
            "/api/no/such/route",
            None,
            Vec::new(),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::PATCH,
            "/api/servers/s1",
            json_ct,
            b"{}".to_vec(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
        (
            Method::GET,
            "/api/servers/%FF%FE",
            None,
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_path",
            None,
        ),
        (
            Method::GET,
            "/api/servers/has%20space",
            None,
            Vec::new(),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::GET,
            "/api/audit?limit=many",
            None,
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_query",
            None,
        ),
    ];
    for (method, path, ct, body, status, code, field) in cases {
        let label = format!(
            "{method} {path} {}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        let (got, err) = raw(&app, method, path, ct, body).await;
        assert_eq!(got, status, "{label}: {err}");
        let (got_code, got_field) = error_of(&err);
        assert_eq!(got_code, code, "{label}: {err}");
        if field.is_some() {
            assert_eq!(got_field.as_deref(), field, "{label}: {err}");
        }
    }
    let (_, after) = app.admin(Method::GET, "/api/servers", None).await;
    assert_eq!(after, before, "no malformed request changed anything");
    app.stop().await;
}

crate::on_both_backends!(malformed_requests);

/// A `notifications/cancelled` whose `params` is not an object, sent while a request with
/// `id: null` is in flight on a shared pool, is accepted and ignored: the request still gets its
/// answer and the node keeps serving (it used to panic the task rewriting the cancellation).
#[tokio::test]
async fn a_cancellation_with_string_params_is_ignored() {
    use crate::mcp_client::{register, upstream, Client};
    let up = upstream(poolgate_loadtests::upstream::UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(
        &app,
        "cx",
        &up.url(),
        json!({"pool_isolation": "shared", "pool_max_size": 2}),
    )
    .await;
    let mut c = Client::new(&app, "cx", "alice");
    c.initialize().await;
    let slow = json!({"jsonrpc": "2.0", "id": null, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 300}}});
    let in_flight = c.post(slow);
    let cancel = async {
        // Once the call is at the upstream (in flight on the node), cancel with a bad shape.
        while up.stats().tool_calls.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        c.post(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": "x"}))
            .await
    };
    let ((status, answer, _), (cancel_status, _, _)) = tokio::join!(in_flight, cancel);
    assert_eq!(cancel_status, StatusCode::ACCEPTED);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"]["structuredContent"]["ms"], 300, "{answer}");
    assert_eq!(
        c.call_ok(1, "echo", json!({"text": "still here"})).await["content"][0]["text"],
        "still here"
    );
    app.stop().await;
}

/// DNS rebinding protection on the MCP endpoint: a browser `Origin` of another site gets 403
/// before anything else happens (no upstream call, no token check); requests without `Origin`
/// (SDK clients) and from the node's own origin are served; on a loopback bind a foreign `Host`
/// (the attacker's name resolving to 127.0.0.1) is refused even with a matching `Origin`;
/// `ALLOWED_ORIGINS` admits the origins it lists.
#[tokio::test]
async fn foreign_origins_and_rebound_hosts_get_403() {
    use crate::mcp_client::{register, upstream};
    let up = upstream(poolgate_loadtests::upstream::UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(Backend::Sqlite, &[("ALLOWED_ORIGINS", "https://app.example.com")], &[]).await;
    register(&app, "o", &up.url(), json!({"pool_max_size": 10})).await;
    let url = app.url("/servers/o/mcp");
    let token = app.token("alice", &["reader"], &[], 600);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let send = |origin: Option<&str>, host: Option<String>| {
        let mut req = app
            .client
            .post(&url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(h) = host {
            req = req.header("host", h);
        }
        req.send()
    };
    let port = app.addr.port();
    for (origin, host, want) in [
        (Some("http://evil.example"), None, StatusCode::FORBIDDEN),
        (Some("null"), None, StatusCode::FORBIDDEN),
        (None, None, StatusCode::OK),
        (Some("https://app.example.com"), None, StatusCode::OK),
        (
            Some("http://evil.example:1"),
            Some(format!("evil.example:{port}")),
            StatusCode::FORBIDDEN,
        ),
        (None, Some(format!("evil.example:{port}")), StatusCode::FORBIDDEN),
        (None, Some(format!("localhost:{port}")), StatusCode::OK),
    ] {
        let before = up.stats().initializes.load(std::sync::atomic::Ordering::Relaxed);
        let resp = send(origin, host.clone()).await.expect("sent");
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.expect("JSON body");
        assert_eq!(status, want, "Origin {origin:?}, Host {host:?}: {body}");
        if want == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], -32000, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Forbidden")),
                "{body}"
            );
            assert_eq!(
                up.stats().initializes.load(std::sync::atomic::Ordering::Relaxed),
                before,
                "a refused request reached the upstream"
            );
        } else {
            assert!(body["result"]["serverInfo"].is_object(), "{body}");
        }
    }
    app.stop().await;
}

/// Client session ids expire `SESSION_MAX_AGE` after issue: an id issued two days ago gets 404
/// (so the SDK re-initializes); the same session re-issued now is served.
#[tokio::test]
async fn an_expired_session_id_gets_404() {
    use crate::mcp_client::{register, upstream, Client};
    use poolgate_node::session_id::SessionCodec;
    let up = upstream(poolgate_loadtests::upstream::UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(Backend::Sqlite, &[("SESSION_MAX_AGE", "3600")], &[]).await;
    register(&app, "exp", &up.url(), json!({"pool_max_size": 2})).await;
    let mut c = Client::new(&app, "exp", "alice");
    c.initialize().await;
    let codec = SessionCodec::new(crate::helpers::TEST_SECRET.as_bytes(), &[]);
    let mut session = codec
        .decode(c.session.as_deref().expect("session id"))
        .expect("the node's id decodes with its secret");
    session.iat -= 2 * 24 * 3600;
    c.session = Some(codec.encode(&session).expect("encode"));
    let (status, body) = c.call(1, "echo", json!({"text": "late"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], -32001, "{body}");
    session.iat = poolgate_shared::auth::now_unix();
    c.session = Some(codec.encode(&session).expect("encode"));
    assert_eq!(
        c.call_ok(2, "echo", json!({"text": "fresh"})).await["content"][0]["text"],
        "fresh"
    );
    app.stop().await;
}

/// Without pooling, in front of a sessionless upstream, two users' sessions each have their own
/// in-flight ids: both may use `id: 1` at the same time (they used to share one key on a node).
#[tokio::test]
async fn direct_sessions_do_not_share_in_flight_ids() {
    use crate::mcp_client::{stateless_upstream, Client};
    let up = stateless_upstream().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_server(
        "direct",
        json!({"endpoints": [{"url": up.url()}], "pool_enabled": false}),
    )
    .await;
    let (mut alice, mut bob) = (Client::new(&app, "direct", "alice"), Client::new(&app, "direct", "bob"));
    alice.initialize().await;
    bob.initialize().await;
    let ((sa, a), (sb, b)) = tokio::join!(
        alice.call(1, "slow", json!({"ms": 300})),
        bob.call(1, "slow", json!({"ms": 300}))
    );
    for (status, answer) in [(sa, a), (sb, b)] {
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["result"]["structuredContent"]["ms"], 300, "{answer}");
    }
    app.stop().await;
}

/// The MCP endpoint's input limits: each malformed or oversized request gets a JSON-RPC error
/// with the status that names the problem (or hyper's 431 for oversized headers), nothing reaches
/// the upstream, and the node serves the next request.
#[tokio::test]
async fn mcp_endpoint_input_limits() {
    use crate::mcp_client::{register, upstream, Client};
    let up = upstream(poolgate_loadtests::upstream::UpstreamConfig::default()).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    register(&app, "lim", &up.url(), json!({"pool_max_size": 2})).await;
    let mut client = Client::new(&app, "lim", "alice");
    client.initialize().await;
    let session = client.session.clone().expect("session");
    let url = app.url("/servers/lim/mcp");
    let token = app.token("alice", &["reader"], &[], 600);
    let call = |name: &str| {
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": name, "arguments": {"text": "x"}}})
            .to_string()
            .into_bytes()
    };
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":{nested}}}}}}}"#
    );
    let mut oversized = call("echo");
    oversized.extend(std::iter::repeat_n(b' ', 5 * 1024 * 1024));
    let batch = format!("[{}]", String::from_utf8_lossy(&call("echo")));
    // (case, content type, body, status, JSON-RPC code, words the message must hold)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, i64, &'a str);
    let cases: Vec<Case> = vec![
        (
            "over 4 MiB",
            Some("application/json"),
            oversized,
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            "larger than 4194304",
        ),
        (
            "a batch",
            Some("application/json"),
            batch.into_bytes(),
            StatusCode::BAD_REQUEST,
            -32600,
            "batches",
        ),
        (
            "nested 100000 deep",
            Some("application/json"),
            deep.into_bytes(),
            StatusCode::BAD_REQUEST,
            -32700,
            "recursion",
        ),
        (
            "text/plain",
            Some("text/plain"),
            call("echo"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32600,
            "application/json",
        ),
        (
            "form data",
            Some("application/x-www-form-urlencoded"),
            call("echo"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32600,
            "Content-Type",
        ),
        (
            "not JSON",
            Some("application/json"),
            b"{\"jsonrpc\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            -32700,
            "Parse error",
        ),
        (
            "a JSON string",
            Some("application/json"),
            b"\"hello\"".to_vec(),
            StatusCode::BAD_REQUEST,
            -32600,
            "object",
        ),
    ];
    let calls_before = up.stats().requests.load(std::sync::atomic::Ordering::Relaxed);
    for (case, content_type, body, status, code, words) in cases {
        let mut req = app
            .client
            .post(&url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (got, answer) = read(req.send().await.expect("sent")).await;
        assert_eq!(got, status, "{case}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{case}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{case}: {message}");
    }
    assert_eq!(
        up.stats().requests.load(std::sync::atomic::Ordering::Relaxed),
        calls_before,
        "a refused request reached the upstream"
    );
    // JSON with a charset parameter, and a `+json` type, are JSON.
    for ct in ["application/json; charset=utf-8", "application/vnd.example+json"] {
        let (got, answer) = read(
            app.client
                .post(&url)
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &session)
                .header("content-type", ct)
                .body(call("echo"))
                .send()
                .await
                .expect("sent"),
        )
        .await;
        assert_eq!(got, StatusCode::OK, "{ct}: {answer}");
    }
    // Oversized headers: one huge value, and too many of them.
    let huge = "h".repeat(1024 * 1024);
    let status = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .header("x-padding", huge.as_str())
        .json(&json!({}))
        .send()
        .await
        .map(|r| r.status());
    assert!(
        matches!(status, Ok(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE) | Err(_)),
        "a 1 MiB header: {status:?}"
    );
    let mut many = app.client.post(&url).bearer_auth(&token);
    for i in 0..200 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let status = many.json(&json!({})).send().await.map(|r| r.status());
    assert!(
        matches!(status, Ok(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE) | Err(_)),
        "200 headers: {status:?}"
    );
    // An unknown method goes to the upstream, whose JSON-RPC error comes back as it is.
    let (status, answer, _) = client
        .post(json!({"jsonrpc": "2.0", "id": 10, "method": "no/such/method"}))
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::OK, json!(-32601)),
        "{answer}"
    );
    // And the node serves on.
    client.call_ok(11, "echo", json!({"text": "fine"})).await;
    app.stop().await;
}
