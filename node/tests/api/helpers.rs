//! Test harness: a real node on port 0 against a fresh database — a new PostgreSQL database per
//! test on the instance `scripts/test.sh` starts (`POOLGATE_TEST_PG_URL`), or a SQLite file in a
//! temp dir.

use std::collections::HashMap;
use std::net::SocketAddr;

use poolgate_node::app::Node;
use poolgate_shared::auth::{now_unix, Claims, JwtKey};
use poolgate_shared::config::Config;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::Value;
use sqlx::Connection as _;

pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The admin URL of the test PostgreSQL instance. Missing means the suite runs outside
/// `scripts/test.sh`: fail loudly rather than skip silently.
pub fn pg_admin_url() -> String {
    std::env::var("POOLGATE_TEST_PG_URL")
        .expect("POOLGATE_TEST_PG_URL is not set: run the tests with scripts/test.sh (it starts PostgreSQL)")
}

pub fn redis_url() -> String {
    std::env::var("POOLGATE_TEST_REDIS_URL")
        .expect("POOLGATE_TEST_REDIS_URL is not set: run the tests with scripts/test.sh (it starts Redis)")
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    dir: Option<std::path::PathBuf>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("poolgate_test_{unique}");
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to test PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let _ = conn.close().await;
                let mut url = url::Url::parse(&admin).expect("admin url");
                url.set_path(&name);
                TestDb {
                    url: url.to_string(),
                    pg_name: Some(name),
                    dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("poolgate-test-{unique}"));
                std::fs::create_dir_all(&dir).expect("temp dir");
                let url = format!("sqlite://{}", dir.join("poolgate.db").display());
                TestDb {
                    url,
                    pg_name: None,
                    dir: Some(dir),
                }
            }
        }
    }

    /// A second handle on an existing database that does not drop it.
    pub fn new_shared(url: &str) -> TestDb {
        TestDb {
            url: url.to_owned(),
            pg_name: None,
            dir: None,
        }
    }

    /// Removes the database (PostgreSQL: forcibly, even with open connections).
    pub async fn drop_now(&self) {
        if let Some(name) = &self.pg_name {
            let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
                .await
                .expect("connect admin");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop database");
            let _ = conn.close().await;
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Environment for a test node: loopback, port 0, the test database, a known JWT secret.
pub fn base_env(db: &TestDb) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("DATABASE_URL".into(), db.url.clone());
    env.insert("HOST".into(), "127.0.0.1".into());
    env.insert("PORT".into(), "0".into());
    env.insert("JWT_SECRET_KEY".into(), TEST_SECRET.into());
    env.insert("LOG_LEVEL".into(), "warn".into());
    env.insert("SHUTDOWN_GRACE_SECONDS".into(), "5".into());
    env
}

pub fn config_from(env: &HashMap<String, String>) -> Config {
    let env = env.clone();
    Config::load(&move |k: &str| env.get(k).cloned(), None).expect("test config is valid")
}

/// A running node.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
    pub db: TestDb,
    pub key: JwtKey,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, &[], &[]).await
    }

    /// Starts a node with `set` added to and `unset` removed from [`base_env`].
    pub async fn spawn_with(backend: Backend, set: &[(&str, &str)], unset: &[&str]) -> TestApp {
        let db = TestDb::new(backend).await;
        Self::spawn_on(db, set, unset).await
    }

    pub async fn spawn_on(db: TestDb, set: &[(&str, &str)], unset: &[&str]) -> TestApp {
        let mut env = base_env(&db);
        for (k, v) in set {
            env.insert((*k).into(), (*v).into());
        }
        for k in unset {
            env.remove(*k);
        }
        let node = Node::bind(config_from(&env)).await.expect("node starts");
        let addr = node.local_addr().expect("bound");
        let key = node.state.jwt.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(node.serve(async move {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            client: Client::new(),
            db,
            key,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Waits, like an orchestrator would, until `/ready` answers 200 (Redis connected).
    pub async fn wait_ready(self) -> TestApp {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self
            .client
            .get(self.url("/ready"))
            .send()
            .await
            .map(|r| r.status())
            .ok()
            != Some(StatusCode::OK)
        {
            assert!(std::time::Instant::now() < deadline, "node never became ready");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A token signed with the node's key.
    pub fn token(&self, sub: &str, roles: &[&str], permissions: &[&str], lifetime_secs: i64) -> String {
        let now = now_unix();
        self.key.mint(&Claims {
            sub: sub.into(),
            exp: now + lifetime_secs,
            iat: Some(now),
            nbf: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        })
    }

    pub fn admin_token(&self) -> String {
        self.token("alice", &["admin"], &[], 600)
    }

    pub fn reader_token(&self) -> String {
        self.token("rita", &["reader"], &[], 600)
    }

    /// Sends `body` (JSON) with `token`, returns status and parsed JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        read(resp).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let token = self.admin_token();
        self.call(method, path, Some(&token), body).await
    }

    /// Registers a server with `id` and one endpoint; panics unless 201.
    pub async fn create_server(&self, id: &str, extra: Value) -> Value {
        let mut body = serde_json::json!({
            "id": id,
            "name": format!("Server {id}"),
            "endpoints": [{"url": "http://127.0.0.1:9/mcp"}],
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (status, server) = self.admin(Method::POST, "/api/servers", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{server}");
        server
    }

    /// Sends the node its shutdown signal (as SIGTERM would) without waiting for it to end.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Whether the node has finished shutting down.
    pub fn stopped(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the node and removes its database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.db.drop_now().await;
    }
}

/// Status and JSON body; asserts that every non-empty body is JSON.
pub async fn read(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("body");
    if text.is_empty() {
        return (status, Value::Null);
    }
    assert!(
        content_type.starts_with("application/json"),
        "{status} answered {content_type:?}: {text}"
    );
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {text}"));
    (status, json)
}

/// The error code and field of an error body, asserting its shape.
pub fn error_of(body: &Value) -> (String, Option<String>) {
    let err = body.get("error").unwrap_or_else(|| panic!("not an error body: {body}"));
    let code = err["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {body}"))
        .to_owned();
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    (code, err.get("field").and_then(Value::as_str).map(str::to_owned))
}

/// Declares `$name` as a test on each backend: `postgres::$name` and `sqlite::$name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::helpers::Backend::Postgres).await
            })+
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::helpers::Backend::Sqlite).await
            })+
        }
    };
}
