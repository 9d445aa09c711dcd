//! A hostile test upstream: an MCP server (Streamable HTTP, session era, protocol 2025-11-25)
//! that misbehaves on purpose. A gateway must survive upstreams it does not control: a buggy or
//! malicious server must cost it neither its memory, nor its tasks, nor the service of its other
//! clients. Each behaviour below names one such attack.
//!
//! It is raw HTTP/1.1 over a tokio `TcpListener` (no HTTP library, so that it can send what no
//! library would), one task per connection, keep-alive. It answers `initialize` (a session id in
//! `mcp-session-id`; a request with an unknown one gets 404), `notifications/*` (202), `ping`,
//! `tools/list`, `DELETE` (ends the session), `GET` with a known session (a server-initiated
//! stream: a notification every 200 ms) and refuses any other `GET` (405). The behaviour is chosen per
//! request by the tool name of `tools/call`, so that one server serves every hostile case and
//! well-behaved calls at the same time:
//!
//! - `echo {text}`: a normal JSON result; `sse_echo {text}`: the same as an event stream.
//! - `huge_event {mib}` (default 64): one SSE event made of `mib` MiB of 1 KiB `data:` lines
//!   (memory exhaustion by one event).
//! - `huge_line {mib}`: one single `data:` line of `mib` MiB (a line without end).
//! - `endless {interval_ms}` (default 10): valid ~1 KiB `notifications/message` events forever,
//!   never the answer (a call that never ends; `interval_ms` 0 sends as fast as the peer reads).
//! - `huge_json {mib}` / `huge_json_chunked {mib}`: a JSON-RPC result of `mib` MiB, with a
//!   `Content-Length` / chunked (memory exhaustion by one answer).
//! - `huge_error {mib}` / `huge_error_chunked {mib}`: a 500 `text/plain` body of `mib` MiB (an
//!   error body nobody bounds).
//! - `jsonrpc_error` (-32601 in a 200), `bad_request` (400 with -32602), `server_error` (500
//!   "boom"): errors to pass on, not to crash on.
//! - `slow_headers`: the status line, then one byte of a header per second, never ending the head
//!   (slowloris from the server side).
//! - `silent`: reads the request and never answers (a hung server).
//! - `garbage`: 4 KiB of random non-HTTP bytes, then closes (a confused or hostile peer).
//! - `wrong_type`: 200 `text/html` (neither JSON nor an event stream).
//! - `vanish`: an event stream that sends one progress event and drops the connection without
//!   ending the body, forgetting the session (a crashed and restarted server: the next request
//!   on the session gets 404).
//! - any other name: JSON-RPC error -32602.
//!
//! [`Hostile::black_hole`] is a whole server that accepts connections and never reads nor answers.
//!
//! Every wait is bounded: a connection ends when its peer goes (a write fails or the read side
//! closes), and anything endless stops after 10 minutes. Dropping the [`Hostile`] stops it.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub const PROTOCOL_VERSION: &str = "2025-11-25";
pub const SESSION_HEADER: &str = "mcp-session-id";

/// The tools, named after the behaviour they trigger (any other name: JSON-RPC error -32602).
pub const TOOLS: [&str; 17] = [
    "echo",
    "sse_echo",
    "huge_event",
    "huge_line",
    "endless",
    "huge_json",
    "huge_json_chunked",
    "huge_error",
    "huge_error_chunked",
    "jsonrpc_error",
    "bad_request",
    "server_error",
    "slow_headers",
    "silent",
    "garbage",
    "wrong_type",
    "vanish",
];

/// The bound of everything endless: holding, trickling, streaming, idling.
const HOLD_LIMIT: Duration = Duration::from_secs(600);
const HEAD_CAP: usize = 64 * 1024;
const BODY_CAP: usize = 1024 * 1024;
/// Big bodies go out in writes of this size.
const CHUNK: usize = 64 * 1024;
/// One `data:` line of `huge_event`, prefix and newline included.
const LINE: usize = 1024;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Default)]
struct Shared {
    sessions: Mutex<HashSet<String>>,
    initializes: AtomicU64,
    deletes: AtomicU64,
    connections: AtomicU64,
}

impl Shared {
    fn knows(&self, session: &str) -> bool {
        self.sessions.lock().map(|s| s.contains(session)).unwrap_or(false)
    }

    fn forget(&self, session: &str) -> bool {
        self.sessions.lock().map(|mut s| s.remove(session)).unwrap_or(false)
    }
}

/// A running hostile upstream; dropping it stops accepting and ends every connection.
pub struct Hostile {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Clone, Copy)]
enum Mode {
    Mcp,
    BlackHole,
}

impl Hostile {
    /// The MCP server on 127.0.0.1, any free port.
    pub async fn start() -> io::Result<Hostile> {
        Self::start_on(([127, 0, 0, 1], 0).into()).await
    }

    /// The MCP server on `addr` (port 0: any free port).
    pub async fn start_on(addr: SocketAddr) -> io::Result<Hostile> {
        Self::spawn(addr, Mode::Mcp).await
    }

    /// A server on 127.0.0.1 that accepts connections and never reads nor answers anything.
    pub async fn black_hole() -> io::Result<Hostile> {
        Self::spawn(([127, 0, 0, 1], 0).into(), Mode::BlackHole).await
    }

    async fn spawn(addr: SocketAddr, mode: Mode) -> io::Result<Hostile> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept(listener, shared.clone(), mode));
        Ok(Hostile { addr, shared, task })
    }

    /// The MCP endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn initializes(&self) -> u64 {
        self.shared.initializes.load(Ordering::Relaxed)
    }

    /// `DELETE`s of a known session.
    pub fn deletes(&self) -> u64 {
        self.shared.deletes.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a `JoinSet`): aborting it aborts them all.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, mode: Mode) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    match mode {
                        Mode::Mcp => conns.spawn(serve(stream, shared.clone())),
                        Mode::BlackHole => conns.spawn(async move {
                            let _ = tokio::time::timeout(HOLD_LIMIT, hold(&stream)).await;
                        }),
                    };
                }
                // Out of descriptors and the like: do not spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections.
            Some(_) = conns.join_next() => {}
        }
    }
}

/// Waits, without reading, until the peer closes its side (or resets).
async fn hold(stream: &TcpStream) {
    loop {
        match stream.ready(Interest::READABLE).await {
            Ok(ready) if !ready.is_read_closed() => {
                // Data came: forget the readiness without reading, wait for the next event.
                let _ = stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
            }
            _ => return,
        }
    }
}

/// One connection: requests one after the other until the peer goes or a behaviour closes it.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        close: false,
    };
    loop {
        let req = match tokio::time::timeout(HOLD_LIMIT, conn.read_request()).await {
            Ok(Ok(Incoming::Request(req))) => req,
            Ok(Ok(Incoming::Refuse(status))) => {
                conn.close = true;
                let _ = conn.respond(status, "text/plain", &[], status.as_bytes()).await;
                return;
            }
            _ => return,
        };
        conn.close = req.close;
        match tokio::time::timeout(HOLD_LIMIT, answer(&conn, &shared, &req)).await {
            Ok(Ok(After::KeepAlive)) if !conn.close => {}
            _ => return,
        }
    }
}

struct Request {
    method: String,
    path: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The client asked to close after the answer.
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

enum Incoming {
    Request(Request),
    /// Malformed or too big: answer this status and close.
    Refuse(&'static str),
    Closed,
}

/// What the connection does after an answer.
enum After {
    KeepAlive,
    Close,
}

struct Conn {
    stream: TcpStream,
    /// Read but not yet consumed (a pipelined next request).
    buf: Vec<u8>,
    /// Close after the current answer (announced in its head).
    close: bool,
}

impl Conn {
    async fn read_more(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 8 * 1024];
        loop {
            self.stream.readable().await?;
            match self.stream.try_read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn read_request(&mut self) -> io::Result<Incoming> {
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            if self.buf.len() > HEAD_CAP {
                return Ok(Incoming::Refuse("431 Request Header Fields Too Large"));
            }
            if self.read_more().await? == 0 {
                return Ok(Incoming::Closed);
            }
        };
        if head_end > HEAD_CAP {
            return Ok(Incoming::Refuse("431 Request Header Fields Too Large"));
        }
        let Some(mut req) = parse_head(&self.buf[..head_end]) else {
            return Ok(Incoming::Refuse("400 Bad Request"));
        };
        if req.header("transfer-encoding").is_some() {
            return Ok(Incoming::Refuse("501 Not Implemented"));
        }
        let len = match req.header("content-length").map(str::parse::<usize>) {
            None => 0,
            Some(Ok(len)) if len <= BODY_CAP => len,
            Some(Ok(_)) => return Ok(Incoming::Refuse("413 Payload Too Large")),
            Some(Err(_)) => return Ok(Incoming::Refuse("400 Bad Request")),
        };
        let end = head_end + 4 + len;
        while self.buf.len() < end {
            if self.read_more().await? == 0 {
                return Ok(Incoming::Closed);
            }
        }
        req.body = self.buf[head_end + 4..end].to_vec();
        self.buf.drain(..end);
        Ok(Incoming::Request(req))
    }

    async fn write(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One piece of a body: a chunk of a chunked one, or as is.
    async fn piece(&self, chunked: bool, data: &[u8]) -> io::Result<()> {
        if !chunked {
            return self.write(data).await;
        }
        if data.is_empty() {
            return Ok(()); // an empty chunk would end the body
        }
        self.write(&chunk(data)).await
    }

    /// A response head; `length` None: chunked.
    fn head(&self, status: &str, content_type: &str, extra: &[(&str, &str)], length: Option<usize>) -> Vec<u8> {
        let mut h = format!("HTTP/1.1 {status}\r\n");
        if !content_type.is_empty() {
            let _ = write!(h, "content-type: {content_type}\r\n");
        }
        for (name, value) in extra {
            let _ = write!(h, "{name}: {value}\r\n");
        }
        match length {
            Some(len) => {
                let _ = write!(h, "content-length: {len}\r\n");
            }
            None => h.push_str("transfer-encoding: chunked\r\n"),
        }
        if self.close {
            h.push_str("connection: close\r\n");
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    /// A whole answer with a `Content-Length`.
    async fn respond(
        &self,
        status: &str,
        content_type: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<After> {
        let mut out = self.head(status, content_type, extra, Some(body.len()));
        out.extend_from_slice(body);
        self.write(&out).await?;
        Ok(After::KeepAlive)
    }

    async fn json(&self, status: &str, body: &Value) -> io::Result<After> {
        self.respond(status, "application/json", &[], body.to_string().as_bytes())
            .await
    }

    /// Event stream headers (chunked), on their own write as the SDK servers send them.
    async fn sse_head(&self) -> io::Result<()> {
        self.write(&self.head("200 OK", "text/event-stream", &[("cache-control", "no-cache")], None))
            .await
    }

    /// A big body: `prefix`, `n` bytes of `unit` repeated, `suffix`, in writes of about
    /// [`CHUNK`], chunked or with a `Content-Length`. Stops at the first failed write.
    #[allow(clippy::too_many_arguments)]
    async fn big(
        &self,
        status: &str,
        content_type: &str,
        chunked: bool,
        prefix: &[u8],
        unit: &[u8],
        n: usize,
        suffix: &[u8],
    ) -> io::Result<After> {
        let length = (!chunked).then_some(prefix.len() + n + suffix.len());
        self.write(&self.head(status, content_type, &[], length)).await?;
        self.piece(chunked, prefix).await?;
        let block = unit.repeat((CHUNK / unit.len().max(1)).max(1));
        let mut left = n;
        while left > 0 {
            let k = left.min(block.len());
            self.piece(chunked, &block[..k]).await?;
            left -= k;
        }
        self.piece(chunked, suffix).await?;
        if chunked {
            self.write(b"0\r\n\r\n").await?;
        }
        Ok(After::KeepAlive)
    }
}

/// `data` as one chunk of a chunked body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path, version) = (first.next()?, first.next()?, first.next()?);
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let connection = headers
        .iter()
        .find(|(n, _)| n == "connection")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let close = connection.contains("close") || (version == "HTTP/1.0" && !connection.contains("keep-alive"));
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body: Vec::new(),
        close,
    })
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn text_result(id: &Value, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}})
}

fn event(msg: &Value) -> Vec<u8> {
    format!("event: message\ndata: {msg}\n\n").into_bytes()
}

async fn answer(conn: &Conn, shared: &Shared, req: &Request) -> io::Result<After> {
    if req.path.split('?').next() != Some("/mcp") {
        return conn.respond("404 Not Found", "text/plain", &[], b"not found").await;
    }
    match req.method.as_str() {
        "POST" => post(conn, shared, req).await,
        "DELETE" => {
            let Some(session) = req.header(SESSION_HEADER) else {
                return conn
                    .respond("400 Bad Request", "text/plain", &[], b"missing session id")
                    .await;
            };
            if shared.forget(session) {
                shared.deletes.fetch_add(1, Ordering::Relaxed);
                conn.respond("200 OK", "", &[], b"").await
            } else {
                conn.respond("404 Not Found", "text/plain", &[], b"session not found")
                    .await
            }
        }
        // A known session's server-initiated stream: a notification every 200 ms until the
        // client goes away (bounded like every hold).
        "GET" if req.header(SESSION_HEADER).is_some_and(|s| shared.knows(s)) => {
            endless(conn, &json!({"interval_ms": 200})).await
        }
        _ => {
            conn.respond(
                "405 Method Not Allowed",
                "text/plain",
                &[("allow", "POST, DELETE")],
                b"",
            )
            .await
        }
    }
}

async fn post(conn: &Conn, shared: &Shared, req: &Request) -> io::Result<After> {
    let Ok(msg) = serde_json::from_slice::<Value>(&req.body) else {
        return conn
            .json("400 Bad Request", &rpc_error(&Value::Null, -32700, "Parse error"))
            .await;
    };
    let id = msg.get("id").cloned();
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        // A response of the client (to a server request): taken.
        return conn.respond("202 Accepted", "", &[], b"").await;
    };
    if method == "initialize" {
        let session = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut s) = shared.sessions.lock() {
            s.insert(session.clone());
        }
        shared.initializes.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "result": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "hostile", "version": "1"},
        }});
        return conn
            .respond(
                "200 OK",
                "application/json",
                &[(SESSION_HEADER, &session)],
                body.to_string().as_bytes(),
            )
            .await;
    }
    let rpc_id = id.clone().unwrap_or(Value::Null);
    let Some(session) = req.header(SESSION_HEADER) else {
        return conn
            .json(
                "400 Bad Request",
                &rpc_error(&rpc_id, -32600, "Bad Request: missing session id"),
            )
            .await;
    };
    if !shared.knows(session) {
        return conn
            .json("404 Not Found", &rpc_error(&rpc_id, -32001, "Session not found"))
            .await;
    }
    let Some(id) = id else {
        return conn.respond("202 Accepted", "", &[], b"").await; // a notification
    };
    match method {
        "ping" => {
            conn.json("200 OK", &json!({"jsonrpc": "2.0", "id": id, "result": {}}))
                .await
        }
        "tools/list" => {
            let tools: Vec<Value> = TOOLS
                .iter()
                .map(|name| {
                    json!({"name": name, "description": format!("hostile behaviour: {name}"),
                    "inputSchema": {"type": "object"}})
                })
                .collect();
            conn.json(
                "200 OK",
                &json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}}),
            )
            .await
        }
        "tools/call" => call(conn, shared, session, &id, msg.get("params").unwrap_or(&Value::Null)).await,
        _ => {
            conn.json(
                "200 OK",
                &rpc_error(&id, -32601, &format!("Method not found: {method}")),
            )
            .await
        }
    }
}

async fn call(conn: &Conn, shared: &Shared, session: &str, id: &Value, params: &Value) -> io::Result<After> {
    let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
    let args = params.get("arguments").unwrap_or(&Value::Null);
    let size = {
        let mib = args.get("mib").and_then(Value::as_f64).unwrap_or(64.0);
        (mib.clamp(0.0, 1024.0) * MIB) as usize
    };
    let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
    let id_json = id.to_string();
    match name {
        "echo" => conn.json("200 OK", &text_result(id, text)).await,
        "sse_echo" => {
            conn.sse_head().await?;
            let mut out = chunk(&event(&text_result(id, text)));
            out.extend_from_slice(b"0\r\n\r\n");
            conn.write(&out).await?;
            Ok(After::KeepAlive)
        }
        "huge_event" => {
            let mut line = b"data: ".to_vec();
            line.resize(LINE - 1, b'x');
            line.push(b'\n');
            let n = size.div_ceil(LINE).max(1) * LINE;
            conn.big(
                "200 OK",
                "text/event-stream",
                true,
                b"event: message\n",
                &line,
                n,
                b"\n",
            )
            .await
        }
        "huge_line" => {
            conn.big(
                "200 OK",
                "text/event-stream",
                true,
                b"event: message\ndata: ",
                b"x",
                size,
                b"\n\n",
            )
            .await
        }
        "endless" => endless(conn, args).await,
        "huge_json" | "huge_json_chunked" => {
            let prefix = format!(r#"{{"jsonrpc":"2.0","id":{id_json},"result":{{"content":[{{"type":"text","text":""#);
            let chunked = name == "huge_json_chunked";
            conn.big(
                "200 OK",
                "application/json",
                chunked,
                prefix.as_bytes(),
                b"x",
                size,
                br#""}]}}"#,
            )
            .await
        }
        "huge_error" | "huge_error_chunked" => {
            let chunked = name == "huge_error_chunked";
            conn.big(
                "500 Internal Server Error",
                "text/plain",
                chunked,
                b"",
                b"boom ",
                size,
                b"",
            )
            .await
        }
        "jsonrpc_error" => conn.json("200 OK", &rpc_error(id, -32601, "Method not found")).await,
        "bad_request" => {
            conn.json("400 Bad Request", &rpc_error(id, -32602, "bad arguments"))
                .await
        }
        "server_error" => {
            conn.respond("500 Internal Server Error", "text/plain", &[], b"boom")
                .await
        }
        "slow_headers" => {
            conn.write(b"HTTP/1.1 200 OK\r\n").await?;
            // Header lines, a byte a second, never the blank line that ends the head.
            for &byte in b"x-slow: 1\r\n".iter().cycle() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                conn.write(&[byte]).await?;
            }
            Ok(After::Close)
        }
        "silent" => {
            hold(&conn.stream).await;
            Ok(After::Close)
        }
        "garbage" => {
            conn.write(&garbage(4096)).await?;
            Ok(After::Close)
        }
        "wrong_type" => conn.respond("200 OK", "text/html", &[], b"<html>nope</html>").await,
        "vanish" => {
            // Forgotten first: by the time the client sees the drop, the session is gone.
            shared.forget(session);
            conn.sse_head().await?;
            let token = params
                .pointer("/_meta/progressToken")
                .cloned()
                .unwrap_or_else(|| json!("hostile"));
            let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": token, "progress": 1, "total": 2}});
            conn.piece(true, &event(&progress)).await?;
            Ok(After::Close) // dropped: no last chunk
        }
        _ => {
            conn.json("200 OK", &rpc_error(id, -32602, &format!("unknown tool {name}")))
                .await
        }
    }
}

/// ~1 KiB notifications forever (bounded by the caller's [`HOLD_LIMIT`]), never the answer.
async fn endless(conn: &Conn, args: &Value) -> io::Result<After> {
    let interval = Duration::from_millis(args.get("interval_ms").and_then(Value::as_u64).unwrap_or(10));
    conn.sse_head().await?;
    let padding = "x".repeat(900);
    for n in 0u64.. {
        let msg = json!({"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "data": format!("tick {n}"), "_meta": {"padding": padding}}});
        conn.piece(true, &event(&msg)).await?;
        if interval.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(interval).await;
        }
    }
    Ok(After::Close)
}

/// Pseudo-random bytes (xorshift) that do not start like an HTTP response.
fn garbage(len: usize) -> Vec<u8> {
    let mut x = (uuid::Uuid::new_v4().as_u128() as u64) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    if let Some(first) = out.first_mut() {
        *first = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().expect("client")
    }

    async fn post(http: &reqwest::Client, h: &Hostile, session: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = http
            .post(h.url())
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            req = req.header(SESSION_HEADER, s);
        }
        req.send().await.expect("send")
    }

    async fn initialize(http: &reqwest::Client, h: &Hostile) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}});
        let resp = post(http, h, None, init).await;
        assert_eq!(resp.status(), 200);
        let session = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .expect("a session id")
            .to_owned();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["result"]["protocolVersion"], PROTOCOL_VERSION);
        assert_eq!(body["id"], 1);
        session
    }

    fn call(name: &str, args: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": args}})
    }

    #[tokio::test]
    async fn initialize_gives_a_session() {
        let h = Hostile::start().await.expect("start");
        let http = client();
        let session = initialize(&http, &h).await;
        assert_eq!(session.len(), 32);
        assert_eq!(h.initializes(), 1);
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(post(&http, &h, Some(&session), note).await.status(), 202);
        let resp = http
            .delete(h.url())
            .header(SESSION_HEADER, &session)
            .send()
            .await
            .expect("delete");
        assert_eq!(resp.status(), 200);
        assert_eq!(h.deletes(), 1);
        assert_eq!(http.get(h.url()).send().await.expect("get").status(), 405);
    }

    #[tokio::test]
    async fn echo_answers_on_one_kept_alive_connection() {
        let h = Hostile::start().await.expect("start");
        let http = client();
        let session = initialize(&http, &h).await;
        let body: Value = post(&http, &h, Some(&session), call("echo", json!({"text": "hi"})))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(body["result"]["content"][0]["text"], "hi");
        assert_eq!(body["id"], 7);
        let resp = post(&http, &h, Some(&session), call("sse_echo", json!({"text": "yo"}))).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let text = resp.text().await.expect("sse body");
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line");
        let msg: Value = serde_json::from_str(data).expect("json event");
        assert_eq!(msg["result"]["content"][0]["text"], "yo");
        let body: Value = post(&http, &h, Some(&session), call("nope", json!({})))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(body["error"]["code"], -32602);
        // Every answer, the event stream included, ended properly: one connection for all.
        assert_eq!(h.connections(), 1);
    }

    #[tokio::test]
    async fn huge_event_is_one_event_of_data_lines() {
        let h = Hostile::start().await.expect("start");
        let http = client();
        let session = initialize(&http, &h).await;
        let resp = post(&http, &h, Some(&session), call("huge_event", json!({"mib": 1}))).await;
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.expect("whole body");
        let text = std::str::from_utf8(&body).expect("utf-8");
        let event = text.strip_prefix("event: message\n").expect("one event");
        let (lines, rest) = event.split_once("\n\n").expect("the event ends");
        assert!(rest.is_empty(), "one event only");
        let data: usize = lines
            .split('\n')
            .map(|l| {
                assert!(l.starts_with("data: "));
                l.len() + 1
            })
            .sum();
        assert!(data >= 1024 * 1024, "{data} bytes of data lines");
    }

    #[tokio::test]
    async fn vanish_forgets_the_session() {
        let h = Hostile::start().await.expect("start");
        let http = client();
        let session = initialize(&http, &h).await;
        let mut resp = post(&http, &h, Some(&session), call("vanish", json!({}))).await;
        assert_eq!(resp.status(), 200);
        let mut got = Vec::new();
        let end = loop {
            match resp.chunk().await {
                Ok(Some(c)) => got.extend_from_slice(&c),
                other => break other,
            }
        };
        assert!(end.is_err(), "the body is cut, not ended");
        assert!(String::from_utf8_lossy(&got).contains("notifications/progress"));
        let ping = json!({"jsonrpc": "2.0", "id": 3, "method": "ping"});
        assert_eq!(post(&http, &h, Some(&session), ping).await.status(), 404);
    }

    #[tokio::test]
    async fn others_are_served_during_an_endless_call() {
        let h = Hostile::start().await.expect("start");
        let http = client();
        let session = initialize(&http, &h).await;
        let mut endless = post(&http, &h, Some(&session), call("endless", json!({}))).await;
        let first = endless.chunk().await.expect("a tick").expect("not ended");
        assert!(String::from_utf8_lossy(&first).contains("tick 0"));
        let body: Value = post(&http, &h, Some(&session), call("echo", json!({"text": "meanwhile"})))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(body["result"]["content"][0]["text"], "meanwhile");
    }

    #[tokio::test]
    async fn black_hole_never_answers() {
        let h = Hostile::black_hole().await.expect("start");
        let err = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(300))
            .build()
            .expect("client")
            .post(h.url())
            .body("{}")
            .send()
            .await
            .expect_err("no answer");
        assert!(err.is_timeout(), "{err}");
        assert_eq!(h.connections(), 1);
    }
}
