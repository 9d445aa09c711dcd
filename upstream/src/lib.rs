//! The upstream MCP client: Streamable HTTP to session-era servers (2025-03-26 … 2025-11-25).
//!
//! One pooled HTTP client (keep-alive, HTTP/2 where the server offers it) serves every upstream
//! session; a session is just its URL, `Mcp-Session-Id`, negotiated protocol version and the
//! server's own headers ([`SessionTarget`]), so any node can talk to any upstream session. Answers
//! come back as JSON or as a `text/event-stream` that is parsed incrementally ([`EventStream`]) so
//! the node can pass events on as they arrive. A lost session (HTTP 404, or a 400 whose error
//! names the session, as the TypeScript SDK answers) is [`UpstreamError::SessionLost`].
//!
//! Upstreams are not trusted: every answer is read against [`Limits`] while it arrives — a JSON
//! body, one SSE event (all its lines), the bytes of one streamed answer, an error body (a few KiB,
//! the rest is never read) — so a node holds at most one limit per request whatever an upstream
//! sends. [`UpstreamError::counts_against_upstream`] separates the upstream's failures (transport,
//! timeouts, 5xx, protocol violations, oversized answers) from answers that are the client's
//! business (4xx, input that cannot be sent), so a client cannot make a healthy session look dead.
//!
//! HTTPS trusts the built-in web roots; [`Tls`] adds private CAs and a client certificate
//! (`POOL_TLS_*`), the same for every upstream.

pub mod sse;

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use sse::{SseEvent, SseParser};

/// Session-era protocol versions poolgate speaks upstream, oldest first.
pub const SESSION_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_SESSION_VERSION: &str = "2025-11-25";
pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// The sessionless revision: `server/discover` instead of a handshake, the version and client
/// capabilities in every request's `_meta`, and routing headers.
pub const STATELESS_VERSION: &str = "2026-07-28";
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
const ACCEPT: &str = "application/json, text/event-stream";

/// Bound on the handshake, pings and DELETE.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one forwarded request, streams included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on a JSON answer and on the bytes of one streamed answer
/// (`UPSTREAM_MAX_RESPONSE_BYTES`).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Most bytes of an error body read (for its message); the rest is never read.
pub const MAX_ERROR_BODY_BYTES: usize = 4096;
/// Most characters of an upstream error body quoted in an error message.
const QUOTED_BODY_CHARS: usize = 200;

/// What the client reads of one upstream answer (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A JSON body, and the bytes of one streamed answer to a POST (`UPSTREAM_MAX_RESPONSE_BYTES`).
    pub max_response_bytes: usize,
    /// One SSE event, all its lines together (`UPSTREAM_MAX_EVENT_BYTES`).
    pub max_event_bytes: usize,
    /// One forwarded request, its streamed answer included (`UPSTREAM_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_response_bytes: MAX_RESPONSE_BYTES,
            max_event_bytes: sse::MAX_EVENT_BYTES,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream session lost")]
    SessionLost,
    /// `body`: the start of the error body (at most [`MAX_ERROR_BODY_BYTES`]); messages quote
    /// only its first characters.
    #[error("upstream answered HTTP {status}{}", quote(body))]
    Http { status: u16, body: String },
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// An answer over a limit; it was cut, and the session must not be reused for it.
    #[error("upstream {what} exceeds {setting} ({limit} bytes)")]
    TooLarge {
        what: &'static str,
        setting: &'static str,
        limit: usize,
    },
    /// The client's message cannot be sent as it is (e.g. a routing header value with a control
    /// character): the client's error, nothing was sent.
    #[error("{0}")]
    InvalidInput(String),
}

impl UpstreamError {
    /// Whether the failure is the upstream's (transport, timeout, 5xx, protocol violation, an
    /// answer over a limit) and counts against its session and endpoint; an HTTP 4xx answer and a
    /// message that could not be sent are the client's business.
    /// Whether the failure also counts against the endpoint (its circuit breaker): the upstream's
    /// failures except an answer over a limit, which a client can provoke by asking for a huge
    /// resource — that session is not reused, but the endpoint is not at fault.
    pub fn counts_against_endpoint(&self) -> bool {
        self.counts_against_upstream() && !matches!(self, UpstreamError::TooLarge { .. })
    }

    pub fn counts_against_upstream(&self) -> bool {
        match self {
            UpstreamError::Http { status, .. } => *status >= 500,
            UpstreamError::InvalidInput(_) | UpstreamError::SessionLost => false,
            UpstreamError::Unreachable(_)
            | UpstreamError::Timeout(_)
            | UpstreamError::Protocol(_)
            | UpstreamError::TooLarge { .. } => true,
        }
    }
}

/// `: <first characters of body>` for error messages, or nothing when the body is empty.
fn quote(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let mut cut: String = body.chars().take(QUOTED_BODY_CHARS).collect();
    if cut.len() < body.len() {
        cut.push('…');
    }
    format!(": {cut}")
}

/// A transport failure, described without its URL: an endpoint URL may carry credentials
/// (`?api_key=…`), and this text reaches clients and logs.
fn transport(e: reqwest::Error, timeout: Duration) -> UpstreamError {
    let e = e.without_url();
    if e.is_builder() {
        UpstreamError::InvalidInput(format!("request cannot be sent upstream: {e}"))
    } else if e.is_timeout() {
        UpstreamError::Timeout(timeout)
    } else {
        UpstreamError::Unreachable(with_causes(&e))
    }
}

/// `e` and the causes under it ("error sending request: client error (Connect): invalid peer
/// certificate: UnknownIssuer"): reqwest's own text hides why (TLS, DNS, refused). Each part once.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Where one upstream session lives and how to address it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTarget {
    pub url: String,
    /// None for a sessionless upstream.
    pub session_id: Option<String>,
    pub protocol_version: String,
    /// The server's own headers (its credentials), never the end user's token.
    pub headers: Vec<(String, String)>,
}

/// The outcome of a handshake.
#[derive(Clone, Debug, PartialEq)]
pub struct Initialized {
    pub session_id: Option<String>,
    pub protocol_version: String,
    /// The server's `initialize` result (capabilities, serverInfo, instructions), cached so that
    /// clients can be answered without a handshake of their own.
    pub result: Value,
}

/// An upstream answer to a POST.
pub enum Reply {
    /// 202: a notification or response was accepted.
    Accepted,
    /// A JSON body (one JSON-RPC message).
    Json(Value),
    /// A stream of events, to pass on as they arrive.
    Stream(EventStream),
}

/// An SSE answer, read incrementally against the limits: one event at most
/// `max_event_bytes`, the whole answer at most `max_total` bytes (none for the long-lived GET
/// stream of server-initiated messages).
pub struct EventStream {
    body: futures_util::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
    read: usize,
    max_total: Option<usize>,
    timeout: Duration,
}

impl EventStream {
    fn new(resp: reqwest::Response, limits: &Limits, bounded: bool) -> Self {
        EventStream {
            body: resp.bytes_stream().boxed(),
            parser: SseParser::with_limit(limits.max_event_bytes),
            ready: Default::default(),
            read: 0,
            max_total: bounded.then_some(limits.max_response_bytes),
            timeout: limits.request_timeout,
        }
    }

    /// The next event; `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Result<SseEvent, UpstreamError>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            match self.body.next().await? {
                Ok(chunk) => {
                    self.read += chunk.len();
                    if let Some(limit) = self.max_total.filter(|l| self.read > *l) {
                        return Some(Err(UpstreamError::TooLarge {
                            what: "streamed answer",
                            setting: "UPSTREAM_MAX_RESPONSE_BYTES",
                            limit,
                        }));
                    }
                    match self.parser.push(&chunk) {
                        Ok(events) => self.ready.extend(events),
                        Err(e) => {
                            return Some(Err(UpstreamError::TooLarge {
                                what: "SSE event",
                                setting: "UPSTREAM_MAX_EVENT_BYTES",
                                limit: e.limit,
                            }))
                        }
                    }
                }
                Err(e) => return Some(Err(transport(e, self.timeout))),
            }
        }
    }
}

/// Upstream HTTPS beyond the defaults (`POOL_TLS_*`): the built-in web roots are always
/// trusted; these add private CAs and a client certificate for upstreams that ask for one. The
/// same for every upstream.
#[derive(Clone, Default)]
pub struct Tls {
    /// CA certificates trusted in addition to the web roots.
    extra_roots: Vec<reqwest::Certificate>,
    /// Presented to upstreams that request a client certificate (mTLS).
    identity: Option<reqwest::Identity>,
}

/// Why TLS material cannot be used; each variant says which part is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Roots(String),
    #[error("{0}")]
    Certificate(String),
    #[error("{0}")]
    Key(String),
}

impl Tls {
    /// Adds every certificate of a PEM bundle to the trusted roots; a bundle without one, or
    /// with one that does not parse, is refused.
    pub fn add_roots_pem(&mut self, pem: &[u8]) -> Result<usize, TlsError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| TlsError::Roots(format!("not a PEM certificate bundle: {}", with_causes(&e))))?;
        if certs.is_empty() {
            return Err(TlsError::Roots(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
            ));
        }
        // Each certificate must parse now, not when the first upstream is called.
        let mut builder = reqwest::Client::builder();
        for c in &certs {
            builder = builder.add_root_certificate(c.clone());
        }
        builder.build().map_err(|e| {
            TlsError::Roots(format!(
                "a certificate in it cannot be used as a CA: {}",
                with_causes(&e)
            ))
        })?;
        let n = certs.len();
        self.extra_roots.extend(certs);
        Ok(n)
    }

    /// Sets the client certificate: `chain` the PEM certificates (leaf first), `key` its PEM
    /// private key (PKCS#8, PKCS#1 or SEC1). Checked now: both parse and belong together.
    pub fn set_identity_pem(&mut self, chain: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let certs = reqwest::Certificate::from_pem_bundle(chain)
            .map_err(|e| TlsError::Certificate(format!("not a PEM certificate chain: {}", with_causes(&e))))?;
        if certs.is_empty() {
            return Err(TlsError::Certificate(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
            ));
        }
        let key_text = String::from_utf8_lossy(key);
        if !key_text.contains("PRIVATE KEY-----") || key_text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(TlsError::Key(
                "must hold only a PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)".to_owned(),
            ));
        }
        let mut both = chain.to_vec();
        both.push(b'\n');
        both.extend_from_slice(key);
        let identity = reqwest::Identity::from_pem(&both)
            .map_err(|e| TlsError::Key(format!("cannot be read as a private key: {}", with_causes(&e))))?;
        reqwest::Client::builder()
            .identity(identity.clone())
            .build()
            .map_err(|e| {
                TlsError::Key(format!(
                    "cannot be used with the client certificate: {}",
                    with_causes(&e)
                ))
            })?;
        self.identity = Some(identity);
        Ok(())
    }

    /// Whether anything differs from the defaults.
    pub fn is_default(&self) -> bool {
        self.extra_roots.is_empty() && self.identity.is_none()
    }

    fn apply(self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for c in self.extra_roots {
            builder = builder.add_root_certificate(c);
        }
        if let Some(id) = self.identity {
            builder = builder.identity(id);
        }
        builder
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("extra_roots", &self.extra_roots.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// The shared HTTP client for all upstreams.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    http: reqwest::Client,
    limits: Limits,
}

impl UpstreamClient {
    /// A client with the default [`Limits`].
    pub fn new() -> Result<UpstreamClient, UpstreamError> {
        UpstreamClient::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Result<UpstreamClient, UpstreamError> {
        UpstreamClient::with_tls(limits, Tls::default())
    }

    /// A client with `limits` that also trusts `tls`'s extra roots and presents its client
    /// certificate.
    pub fn with_tls(limits: Limits, tls: Tls) -> Result<UpstreamClient, UpstreamError> {
        let http = tls
            .apply(
                reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(256)
                    .tcp_nodelay(true),
            )
            .build()
            .map_err(|e| UpstreamError::Protocol(format!("HTTP client: {e}")))?;
        Ok(UpstreamClient { http, limits })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The bound on one forwarded request (`UPSTREAM_REQUEST_TIMEOUT`).
    pub fn request_timeout(&self) -> Duration {
        self.limits.request_timeout
    }

    fn post(&self, target: &SessionTarget, body: Vec<u8>, timeout: Duration) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&target.url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .body(body);
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(id) = &target.session_id {
            req = req
                .header(SESSION_HEADER, id.as_str())
                .header(VERSION_HEADER, target.protocol_version.as_str());
        } else if target.protocol_version == STATELESS_VERSION {
            req = req.header(VERSION_HEADER, STATELESS_VERSION);
        }
        req
    }

    /// Sends one message in the target's era: a sessionless (2026-07-28) upstream gets the version
    /// and client capabilities in `_meta` and the `Mcp-Method`/`Mcp-Name` routing headers.
    pub async fn send_json(
        &self,
        target: &SessionTarget,
        msg: &Value,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        if target.protocol_version != STATELESS_VERSION {
            return self
                .send(target, session_era_message(msg).to_string().into_bytes(), timeout)
                .await;
        }
        let (body, method, name) = stateless_message(msg);
        let mut req = self.post(target, body.to_string().into_bytes(), timeout);
        if let Some(m) = method {
            req = req.header(METHOD_HEADER, m);
        }
        if let Some(n) = name {
            check_header_value(NAME_HEADER, &n)?;
            req = req.header(NAME_HEADER, n);
        }
        let resp = req.send().await.map_err(|e| transport(e, timeout))?;
        self.classify(resp, false, timeout).await
    }

    /// `server/discover`: the server's result when it speaks the sessionless revision, `None`
    /// when it does not (it then needs the `initialize` handshake).
    pub async fn discover(&self, url: &str, headers: &[(String, String)]) -> Result<Option<Value>, UpstreamError> {
        let target = SessionTarget {
            url: url.to_owned(),
            session_id: None,
            protocol_version: STATELESS_VERSION.to_owned(),
            headers: headers.to_vec(),
        };
        let id = format!("poolgate-discover-{}", uuid::Uuid::new_v4().simple());
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": {}});
        let answer = match self.send_json(&target, &msg, CONTROL_TIMEOUT).await {
            Ok(Reply::Json(v)) => v,
            Ok(Reply::Stream(mut s)) => find_response(&mut s, &id).await?,
            Ok(Reply::Accepted) | Err(UpstreamError::Http { .. }) | Err(UpstreamError::Protocol(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let speaks = answer
            .pointer("/result/supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(STATELESS_VERSION)));
        Ok(speaks.then(|| answer["result"].clone()))
    }

    /// Whether an endpoint answers at all, for health checks and breakers: one `server/discover`
    /// POST within the control timeout. Any answer below HTTP 500 counts as up (a session-era
    /// server refuses the method it does not know); transport failures, timeouts, 5xx and
    /// garbage count as down.
    pub async fn probe(&self, url: &str, headers: &[(String, String)]) -> Result<(), UpstreamError> {
        let target = SessionTarget {
            url: url.to_owned(),
            session_id: None,
            protocol_version: STATELESS_VERSION.to_owned(),
            headers: headers.to_vec(),
        };
        let id = format!("poolgate-probe-{}", uuid::Uuid::new_v4().simple());
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": {}});
        match self.send_json(&target, &msg, CONTROL_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(e) if !e.counts_against_upstream() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends one JSON-RPC message; classifies the answer.
    pub async fn send(&self, target: &SessionTarget, body: Vec<u8>, timeout: Duration) -> Result<Reply, UpstreamError> {
        let resp = self
            .post(target, body, timeout)
            .send()
            .await
            .map_err(|e| transport(e, timeout))?;
        self.classify(resp, target.session_id.is_some(), timeout).await
    }

    /// The handshake: `initialize` (asking for `version`), then `notifications/initialized`.
    pub async fn initialize(
        &self,
        url: &str,
        headers: &[(String, String)],
        version: &str,
    ) -> Result<Initialized, UpstreamError> {
        let target = SessionTarget {
            url: url.to_owned(),
            session_id: None,
            protocol_version: version.to_owned(),
            headers: headers.to_vec(),
        };
        let init_id = format!("poolgate-init-{}", uuid::Uuid::new_v4().simple());
        let body = json!({
            "jsonrpc": "2.0", "id": init_id, "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
                "clientInfo": {"name": "poolgate", "version": env!("CARGO_PKG_VERSION")},
            }
        });
        let resp = self
            .post(&target, body.to_string().into_bytes(), CONTROL_TIMEOUT)
            .send()
            .await
            .map_err(|e| transport(e, CONTROL_TIMEOUT))?;
        let session_id = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = match self.classify(resp, false, CONTROL_TIMEOUT).await? {
            Reply::Json(v) => v,
            Reply::Stream(mut events) => find_response(&mut events, &init_id).await?,
            Reply::Accepted => return Err(UpstreamError::Protocol("initialize answered 202".into())),
        };
        if let Some(err) = answer.get("error") {
            return Err(UpstreamError::Protocol(format!("initialize refused: {err}")));
        }
        let result = answer
            .get("result")
            .cloned()
            .ok_or_else(|| UpstreamError::Protocol("initialize without result".into()))?;
        let negotiated = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(version)
            .to_owned();
        if !SESSION_VERSIONS.contains(&negotiated.as_str()) {
            return Err(UpstreamError::Protocol(format!(
                "upstream chose unsupported protocol version {negotiated}"
            )));
        }
        let session = SessionTarget {
            session_id: session_id.clone(),
            protocol_version: negotiated.clone(),
            ..target
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        match self
            .send(&session, note.to_string().into_bytes(), CONTROL_TIMEOUT)
            .await?
        {
            Reply::Accepted | Reply::Json(_) => {}
            Reply::Stream(mut s) => while s.next().await.is_some() {},
        }
        Ok(Initialized {
            session_id,
            protocol_version: negotiated,
            result,
        })
    }

    /// `ping`: Ok when the session answers.
    pub async fn ping(&self, target: &SessionTarget) -> Result<(), UpstreamError> {
        let id = format!("poolgate-ping-{}", uuid::Uuid::new_v4().simple());
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
        let answer = match self
            .send(target, body.to_string().into_bytes(), CONTROL_TIMEOUT)
            .await?
        {
            Reply::Json(v) => v,
            Reply::Stream(mut s) => find_response(&mut s, &id).await?,
            Reply::Accepted => return Err(UpstreamError::Protocol("ping answered 202".into())),
        };
        match answer.get("error") {
            Some(e) => Err(UpstreamError::Protocol(format!("ping failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Opens the session's GET event stream (server-initiated messages), resuming after
    /// `last_event_id` when given; `None` when the upstream offers no GET stream (405).
    pub async fn open_stream(
        &self,
        target: &SessionTarget,
        last_event_id: Option<&str>,
    ) -> Result<Option<EventStream>, UpstreamError> {
        let mut req = self.http.get(&target.url).header("accept", "text/event-stream");
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(id) = &target.session_id {
            req = req
                .header(SESSION_HEADER, id.as_str())
                .header(VERSION_HEADER, target.protocol_version.as_str());
        }
        if let Some(last) = last_event_id {
            check_header_value("last-event-id", last)?;
            req = req.header("last-event-id", last);
        }
        // The stream itself may stay open for hours; its headers must come within the control
        // timeout, so a black-holed upstream cannot hold a client's GET forever.
        let resp = match tokio::time::timeout(CONTROL_TIMEOUT, req.send()).await {
            Ok(sent) => sent.map_err(|e| transport(e, CONTROL_TIMEOUT))?,
            Err(_) => return Err(UpstreamError::Timeout(CONTROL_TIMEOUT)),
        };
        if resp.status().as_u16() == 200 && is_event_stream(&resp) {
            return Ok(Some(EventStream::new(resp, &self.limits, false)));
        }
        match self
            .classify(resp, target.session_id.is_some(), self.limits.request_timeout)
            .await
        {
            Ok(Reply::Stream(s)) => Ok(Some(s)),
            Ok(_) => Ok(None),
            Err(UpstreamError::Http { status: 405, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends the session upstream (DELETE); 404 and 405 count as done.
    pub async fn close(&self, target: &SessionTarget) -> Result<(), UpstreamError> {
        let Some(id) = &target.session_id else { return Ok(()) };
        let mut req = self
            .http
            .delete(&target.url)
            .timeout(CONTROL_TIMEOUT)
            .header(SESSION_HEADER, id.as_str())
            .header(VERSION_HEADER, target.protocol_version.as_str());
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.map_err(|e| transport(e, CONTROL_TIMEOUT))?;
        match resp.status().as_u16() {
            200..=299 | 404 | 405 => Ok(()),
            status => Err(UpstreamError::Http {
                status,
                body: read_text(resp).await,
            }),
        }
    }

    /// Turns an HTTP answer into a [`Reply`], recognising a lost session; bodies are read
    /// against the limits.
    async fn classify(
        &self,
        resp: reqwest::Response,
        has_session: bool,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        let status = resp.status().as_u16();
        match status {
            202 => Ok(Reply::Accepted),
            200 if is_event_stream(&resp) => Ok(Reply::Stream(EventStream::new(resp, &self.limits, true))),
            200 => {
                let bytes = read_limited(resp, self.limits.max_response_bytes, timeout).await?;
                if bytes.is_empty() {
                    return Ok(Reply::Accepted);
                }
                serde_json::from_slice(&bytes)
                    .map(Reply::Json)
                    .map_err(|e| UpstreamError::Protocol(format!("answer is not JSON: {e}")))
            }
            404 if has_session => Err(UpstreamError::SessionLost),
            400 if has_session => {
                let body = read_text(resp).await;
                if body.to_ascii_lowercase().contains("session") {
                    Err(UpstreamError::SessionLost)
                } else {
                    Err(UpstreamError::Http { status, body })
                }
            }
            _ => Err(UpstreamError::Http {
                status,
                body: read_text(resp).await,
            }),
        }
    }
}

fn is_event_stream(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

/// Refuses a header value that HTTP cannot carry (control characters, line breaks) before
/// anything is sent: the message is the client's, so is the error.
fn check_header_value(name: &str, value: &str) -> Result<(), UpstreamError> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(UpstreamError::InvalidInput(format!(
            "the value for the {name} header contains a control character"
        )));
    }
    Ok(())
}

/// Reads a whole body, refusing it as soon as it passes `limit` (a declared length over the limit
/// is refused before reading anything).
async fn read_limited(mut resp: reqwest::Response, limit: usize, timeout: Duration) -> Result<Vec<u8>, UpstreamError> {
    let too_large = UpstreamError::TooLarge {
        what: "JSON answer",
        setting: "UPSTREAM_MAX_RESPONSE_BYTES",
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(e, timeout))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The message without the sessionless revision's `_meta` keys, for a session-era upstream (a
/// 2026-07-28 client's request relayed to a session it does not know about).
pub fn session_era_message(msg: &Value) -> std::borrow::Cow<'_, Value> {
    let has_keys = msg
        .pointer("/params/_meta")
        .and_then(Value::as_object)
        .is_some_and(|m| m.keys().any(|k| k.starts_with("io.modelcontextprotocol/")));
    if !has_keys {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut out = msg.clone();
    if let Some(meta) = out.pointer_mut("/params/_meta").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty() {
            if let Some(params) = out.get_mut("params").and_then(Value::as_object_mut) {
                params.remove("_meta");
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The message with the sessionless `_meta` keys added, and its routing header values.
pub fn stateless_message(msg: &Value) -> (Value, Option<String>, Option<String>) {
    let mut out = msg.clone();
    let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
    if method.is_some() {
        if !out.get("params").is_some_and(Value::is_object) {
            out["params"] = json!({});
        }
        if !out["params"].get("_meta").is_some_and(Value::is_object) {
            out["params"]["_meta"] = json!({});
        }
        out["params"]["_meta"][META_VERSION] = json!(STATELESS_VERSION);
        if out["params"]["_meta"].get(META_CAPABILITIES).is_none() {
            out["params"]["_meta"][META_CAPABILITIES] = json!({});
        }
    }
    let name = match method.as_deref() {
        Some("tools/call") | Some("prompts/get") => msg.pointer("/params/name").and_then(Value::as_str),
        Some("resources/read") => msg.pointer("/params/uri").and_then(Value::as_str),
        _ => None,
    }
    .map(str::to_owned);
    (out, method, name)
}

/// The start of an error body: at most [`MAX_ERROR_BODY_BYTES`] are read, the rest is dropped
/// with the connection (an error page of any size costs the node a few KiB).
async fn read_text(mut resp: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            let room = MAX_ERROR_BODY_BYTES - bytes.len();
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if bytes.len() >= MAX_ERROR_BODY_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CONTROL_TIMEOUT, read).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Reads events until the JSON-RPC response with `id`.
async fn find_response(events: &mut EventStream, id: &str) -> Result<Value, UpstreamError> {
    while let Some(event) = events.next().await {
        let event = event?;
        if let Ok(msg) = serde_json::from_str::<Value>(&event.data) {
            if msg.get("id").and_then(Value::as_str) == Some(id) && msg.get("method").is_none() {
                return Ok(msg);
            }
        }
    }
    Err(UpstreamError::Protocol(format!(
        "stream ended without the answer to {id}"
    )))
}
