//! `/health` touches nothing; `/ready` names what is down.

use reqwest::{Method, StatusCode};

use crate::helpers::{redis_url, Backend, TestApp};

#[tokio::test]
async fn ready_names_the_database_when_it_goes_away() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (status, body) = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["detail"]["mode"], "embedded");
    app.db.drop_now().await;
    let (status, body) = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["causes"][0]["component"], "database", "{body}");
    let (status, _) = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "liveness does not depend on the database");
    // Admin reads fail with a JSON 503, not a hang or a 500.
    let (status, body) = app.admin(Method::GET, "/api/servers", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn distributed_mode_is_ready_with_redis_and_names_redis_without_it() {
    let app = TestApp::spawn_with(Backend::Postgres, &[("REDIS_URL", &redis_url())], &[]).await;
    // The client connects in the background; readiness follows within the reconnect backoff.
    let mut last = None;
    for _ in 0..50 {
        let (status, body) = app.call(Method::GET, "/ready", None, None).await;
        if status == StatusCode::OK {
            assert_eq!(body["detail"]["mode"], "distributed");
            assert_eq!(body["detail"]["control_plane"], "redis");
            last = None;
            break;
        }
        last = Some(body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(last.is_none(), "never ready: {last:?}");
    app.stop().await;

    // A port nothing listens on: the node starts, and /ready names redis within its bound.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let app = TestApp::spawn_with(
        Backend::Postgres,
        &[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))],
        &[],
    )
    .await;
    let started = std::time::Instant::now();
    let (status, body) = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["causes"][0]["component"], "redis", "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "readiness is bounded"
    );
    let (status, _) = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
