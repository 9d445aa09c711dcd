//! Upstream TLS (`POOL_TLS_*`, seed 000's "TLS Configuration"): HTTPS test upstreams with
//! certificates from a private CA made here — trusted only with `POOL_TLS_CA_PATH`; one that
//! requires a client certificate, reached only with `POOL_TLS_CERT_PATH` + `POOL_TLS_KEY_PATH` —
//! and TLS files that cannot be used stop start-up with an error naming the key and the file.

use std::path::{Path, PathBuf};

use poolgate_loadtests::upstream::{server_tls, Upstream, UpstreamConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{base_env, config_from, Backend, TestApp, TestDb};
use crate::mcp_client::{register, Client};

/// A private CA in a directory of its own; its certificate is `ca.pem` there.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate the CA signed and its key, as DER and as PEM files.
struct Leaf {
    der: Vec<u8>,
    key_der: Vec<u8>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("poolgate-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, "poolgate test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("ca.pem");
        Pki { dir, ca }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn ca_der(&self) -> Vec<u8> {
        self.ca.der().to_vec()
    }

    /// A certificate for `names` (server) or for a client, written as `<file>.pem`/`<file>.key`.
    fn leaf(&self, file: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &*self.ca).expect("signed");
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("cert file");
        std::fs::write(&key_path, key.serialize_pem()).expect("key file");
        Leaf {
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            cert_path,
            key_path,
        }
    }

    /// An HTTPS test upstream on loopback with a server certificate from this CA; with
    /// `client_auth` every client must present a certificate this CA signed.
    async fn upstream(&self, name: &str, client_auth: bool) -> Upstream {
        let leaf = self.leaf(name, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let tls = server_tls(vec![leaf.der], leaf.key_der, client_auth.then(|| self.ca_der())).expect("server TLS");
        Upstream::start_tls(([127, 0, 0, 1], 0).into(), UpstreamConfig::default(), tls)
            .await
            .expect("HTTPS upstream starts")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `initialize`, then `echo` through server `id`; the answer of the first step that fails, or the
/// echo's.
async fn echo_through(app: &TestApp, id: &str) -> (StatusCode, Value) {
    let mut client = Client::new(app, id, "alice");
    let (status, body, sid) = client
        .post(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .await;
    if status != StatusCode::OK || body.get("error").is_some() {
        return (status, body);
    }
    client.session = sid;
    let _ = client
        .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let (status, body) = client.call(1, "echo", json!({"text": "over TLS"})).await;
    let body = match body {
        Value::Array(mut events) => events.pop().unwrap_or(Value::Null),
        body => body,
    };
    (status, body)
}

fn assert_upstream_failure(status: StatusCode, body: &Value) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        body["error"].is_object() && message.to_lowercase().contains("upstream"),
        "a JSON-RPC error naming the upstream failure: {status} {body}"
    );
}

fn assert_echoed(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["result"].is_object(), "{body}");
    assert!(body.to_string().contains("over TLS"), "{body}");
}

/// Without `POOL_TLS_CA_PATH` an upstream whose certificate a private CA signed is not trusted;
/// with it (and `POOL_TLS_ENABLED=true`) it is, the web roots still trusted besides.
#[tokio::test]
async fn a_private_ca_is_trusted_only_when_configured() {
    let pki = Pki::new();
    let up = pki.upstream("private", false).await;
    assert!(up.url().starts_with("https://127.0.0.1:"), "{}", up.url());

    let plain = TestApp::spawn_with(Backend::Sqlite, &[], &[]).await;
    register(&plain, "private", &up.url(), json!({})).await;
    let (status, body) = echo_through(&plain, "private").await;
    assert_upstream_failure(status, &body);
    // The cause is named, not just "error sending request".
    assert!(body.to_string().contains("certificate"), "{body}");
    plain.stop().await;

    // The paths do nothing while POOL_TLS_ENABLED is false.
    let ca = pki.ca_path().display().to_string();
    let disabled = TestApp::spawn_with(Backend::Sqlite, &[("POOL_TLS_CA_PATH", &ca)], &[]).await;
    register(&disabled, "private", &up.url(), json!({})).await;
    let (status, body) = echo_through(&disabled, "private").await;
    assert_upstream_failure(status, &body);
    disabled.stop().await;

    let trusting = TestApp::spawn_with(
        Backend::Sqlite,
        &[("POOL_TLS_ENABLED", "true"), ("POOL_TLS_CA_PATH", &ca)],
        &[],
    )
    .await;
    register(&trusting, "private", &up.url(), json!({})).await;
    let (status, body) = echo_through(&trusting, "private").await;
    assert_echoed(status, &body);
    trusting.stop().await;
    up.stop().await;
}

/// An upstream that requires a client certificate from the private CA is reached only when the
/// node presents one (`POOL_TLS_CERT_PATH` + `POOL_TLS_KEY_PATH`).
#[tokio::test]
async fn a_client_certificate_is_presented_when_configured() {
    let pki = Pki::new();
    let up = pki.upstream("mtls", true).await;
    let client = pki.leaf("client", &["poolgate-node"], ExtendedKeyUsagePurpose::ClientAuth);
    let ca = pki.ca_path().display().to_string();

    let anonymous = TestApp::spawn_with(
        Backend::Sqlite,
        &[("POOL_TLS_ENABLED", "true"), ("POOL_TLS_CA_PATH", &ca)],
        &[],
    )
    .await;
    register(&anonymous, "mtls", &up.url(), json!({})).await;
    let (status, body) = echo_through(&anonymous, "mtls").await;
    assert_upstream_failure(status, &body);
    anonymous.stop().await;

    let (cert, key) = (
        client.cert_path.display().to_string(),
        client.key_path.display().to_string(),
    );
    let identified = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("POOL_TLS_ENABLED", "true"),
            ("POOL_TLS_CA_PATH", &ca),
            ("POOL_TLS_CERT_PATH", &cert),
            ("POOL_TLS_KEY_PATH", &key),
        ],
        &[],
    )
    .await;
    register(&identified, "mtls", &up.url(), json!({})).await;
    let (status, body) = echo_through(&identified, "mtls").await;
    assert_echoed(status, &body);
    identified.stop().await;
    up.stop().await;
}

/// The error `Node::bind` stops with for these settings (a `ConfigError`: exit 2).
async fn start_up_error(set: &[(&str, &str)]) -> String {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut env = base_env(&db);
    env.insert("POOL_TLS_ENABLED".into(), "true".into());
    for (k, v) in set {
        env.insert((*k).into(), (*v).into());
    }
    let err = match poolgate_node::app::Node::bind(config_from(&env)).await {
        Ok(_) => panic!("a node started with unusable TLS files: {set:?}"),
        Err(e) => e,
    };
    assert!(
        err.downcast_ref::<poolgate_shared::config::ConfigError>().is_some(),
        "{err:#}"
    );
    format!("{err:#}")
}

fn assert_names(message: &str, key: &str, path: &Path) {
    assert!(
        message.contains(key) && message.contains(&path.display().to_string()),
        "the error names {key} and {}: {message}",
        path.display()
    );
}

/// A TLS file that is missing or is not the PEM it should be stops start-up, naming the key and
/// the file.
#[tokio::test]
async fn unusable_tls_files_stop_start_up() {
    let pki = Pki::new();
    let client = pki.leaf("client", &["poolgate-node"], ExtendedKeyUsagePurpose::ClientAuth);
    let missing = pki.dir.join("no-such.pem");
    let not_pem = pki.dir.join("not-pem.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("file");
    let s = |p: &Path| p.display().to_string();

    let m = start_up_error(&[("POOL_TLS_CA_PATH", &s(&missing))]).await;
    assert_names(&m, "POOL_TLS_CA_PATH", &missing);
    let m = start_up_error(&[("POOL_TLS_CA_PATH", &s(&not_pem))]).await;
    assert_names(&m, "POOL_TLS_CA_PATH", &not_pem);

    let m = start_up_error(&[
        ("POOL_TLS_CERT_PATH", &s(&not_pem)),
        ("POOL_TLS_KEY_PATH", &s(&client.key_path)),
    ])
    .await;
    assert_names(&m, "POOL_TLS_CERT_PATH", &not_pem);
    let m = start_up_error(&[
        ("POOL_TLS_CERT_PATH", &s(&client.cert_path)),
        ("POOL_TLS_KEY_PATH", &s(&missing)),
    ])
    .await;
    assert_names(&m, "POOL_TLS_KEY_PATH", &missing);
    // A certificate where the key should be.
    let m = start_up_error(&[
        ("POOL_TLS_CERT_PATH", &s(&client.cert_path)),
        ("POOL_TLS_KEY_PATH", &s(&client.cert_path)),
    ])
    .await;
    assert_names(&m, "POOL_TLS_KEY_PATH", &client.cert_path);
    // Another certificate's key.
    let other = pki.leaf("other", &["poolgate-node"], ExtendedKeyUsagePurpose::ClientAuth);
    let m = start_up_error(&[
        ("POOL_TLS_CERT_PATH", &s(&client.cert_path)),
        ("POOL_TLS_KEY_PATH", &s(&other.key_path)),
    ])
    .await;
    assert_names(&m, "POOL_TLS_KEY_PATH", &other.key_path);

    // A certificate without its key is refused when the configuration loads.
    let env = |k: &str| match k {
        "POOL_TLS_ENABLED" => Some("true".to_owned()),
        "POOL_TLS_CERT_PATH" => Some(s(&client.cert_path)),
        _ => None,
    };
    let err = poolgate_shared::config::Config::load(&env, None).expect_err("refused");
    assert_eq!(err.key(), Some("POOL_TLS_KEY_PATH"), "{err}");
}
