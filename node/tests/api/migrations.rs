//! Migrations: idempotent, safe under concurrent start, reversible.

use poolgate_shared::config::DatabaseKind;
use poolgate_store::{MigrationState, Store};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, TestApp, TestDb};

fn kind(backend: Backend) -> DatabaseKind {
    match backend {
        Backend::Postgres => DatabaseKind::Postgres,
        Backend::Sqlite => DatabaseKind::Sqlite,
    }
}

async fn states(store: &Store) -> Vec<MigrationState> {
    store
        .migration_status()
        .await
        .expect("status")
        .into_iter()
        .map(|s| s.state)
        .collect()
}

async fn up_is_idempotent_and_down_up_round_trips(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, &kind(backend)).expect("connect");
    let total = states(&store).await.len();
    assert!(total >= 6);
    assert!(states(&store).await.iter().all(|s| *s == MigrationState::Pending));
    store.migrate_up().await.expect("up");
    store.migrate_up().await.expect("up again is a no-op");
    assert!(states(&store).await.iter().all(|s| *s == MigrationState::Applied));

    // Down one: only the newest is reverted.
    let reverted = store.migrate_down(None).await.expect("down");
    assert_eq!(reverted.len(), 1);
    let after_one = states(&store).await;
    assert_eq!(after_one.iter().filter(|s| **s == MigrationState::Pending).count(), 1);
    assert_eq!(after_one.last(), Some(&MigrationState::Pending));

    // Down to zero: everything reverted, tables gone.
    let reverted = store.migrate_down(Some(0)).await.expect("down all");
    assert_eq!(reverted.len(), total - 1);
    assert!(states(&store).await.iter().all(|s| *s == MigrationState::Pending));
    assert!(store.list_servers().await.is_err(), "servers table dropped");

    // And up again: the schema works.
    store.migrate_up().await.expect("up after down");
    assert!(states(&store).await.iter().all(|s| *s == MigrationState::Applied));
    assert_eq!(store.list_servers().await.expect("servers table back").len(), 0);
    store.close().await;
    db.drop_now().await;
}

/// Two nodes starting at the same moment on one fresh PostgreSQL database both come up: the
/// migrator's advisory lock makes the second wait, then find nothing to do.
#[tokio::test]
async fn two_nodes_start_at_once_on_one_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    let url = db.url.clone();
    let second = TestDb::new_shared(&url);
    let (a, b) = tokio::join!(TestApp::spawn_on(db, &[], &[]), TestApp::spawn_on(second, &[], &[]));
    for app in [&a, &b] {
        let (status, body) = app.call(Method::GET, "/ready", None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // One node writes, the other reads it: same database, schema applied once.
    a.create_server("shared", json!({})).await;
    let (status, server) = b.admin(Method::GET, "/api/servers/shared", None).await;
    assert_eq!(status, StatusCode::OK, "{server}");
    let store = Store::connect(&url, &DatabaseKind::Postgres).expect("connect");
    assert!(states(&store).await.iter().all(|s| *s == MigrationState::Applied));
    store.close().await;
    b.stop().await; // drops nothing: `second` does not own the database
    a.stop().await;
}

crate::on_both_backends!(up_is_idempotent_and_down_up_round_trips);
