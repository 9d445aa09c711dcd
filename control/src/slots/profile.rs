//! What a process learned about each upstream, so that requests need not ask again: per endpoint
//! its protocol era (the `server/discover` result of a 2026-07-28 server, or the fact that it
//! needs the session-era handshake), per server the `initialize` result as session-era clients
//! get it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use poolgate_shared::domain::server::ServerId;
use poolgate_upstream::LATEST_SESSION_VERSION;

/// How long a process trusts what it learned from an endpoint's `server/discover`.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Where the server's identity sits in a 2026-07-28 result.
pub const SERVER_INFO_META: &str = "io.modelcontextprotocol/serverInfo";

/// The per-process cache of upstream profiles (no pool state: losing it costs one call).
#[derive(Default)]
pub struct Profiles {
    /// Per endpoint URL: its `server/discover` result when it speaks the sessionless revision
    /// (`None`: it needs the handshake), and when that was learned.
    discovery: Mutex<HashMap<String, (Instant, Option<Value>)>>,
    /// Per server: the upstream's protocol version and `initialize` result as clients get it,
    /// so a client's `initialize` in shared isolation needs no lease once this process saw one.
    init: Mutex<HashMap<ServerId, (String, Value)>>,
}

impl Profiles {
    /// The endpoint's cached discovery, if still fresh: `Some(None)` means "session era".
    pub fn discovery(&self, url: &str) -> Option<Option<Value>> {
        let cache = self.discovery.lock().ok()?;
        let (at, result) = cache.get(url)?;
        (at.elapsed() < DISCOVERY_TTL).then(|| result.clone())
    }

    /// Whether the endpoint is known (and fresh) to speak the sessionless revision, without
    /// copying its discovery: `None` when not known.
    pub fn is_sessionless(&self, url: &str) -> Option<bool> {
        let cache = self.discovery.lock().ok()?;
        let (at, result) = cache.get(url)?;
        (at.elapsed() < DISCOVERY_TTL).then(|| result.is_some())
    }

    pub fn remember_discovery(&self, url: &str, result: Option<Value>) {
        if let Ok(mut cache) = self.discovery.lock() {
            cache.insert(url.to_owned(), (Instant::now(), result));
        }
    }

    /// The server's cached (protocol version, initialize result).
    pub fn init(&self, server: &ServerId) -> Option<(String, Value)> {
        self.init.lock().ok()?.get(server).cloned()
    }

    /// Forgets the server's initialize result (its configuration changed).
    pub fn forget_init(&self, server: &ServerId) {
        if let Ok(mut m) = self.init.lock() {
            m.remove(server);
        }
    }

    pub fn remember_init(&self, server: &ServerId, version: &str, result: &Value) {
        if let Ok(mut m) = self.init.lock() {
            m.insert(server.clone(), (version.to_owned(), result.clone()));
        }
    }
}

/// A session-era `initialize` result made from a sessionless server's `server/discover` result.
/// The server's identity is in `_meta["io.modelcontextprotocol/serverInfo"]` (older drafts put
/// it at the top level); session-era clients require it, so it is never null.
pub fn init_from_discovery(d: &Value) -> Value {
    let info = d
        .pointer("/_meta")
        .and_then(|m| m.get(SERVER_INFO_META))
        .or_else(|| d.get("serverInfo"))
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"name": "upstream", "version": "unknown"}));
    let mut r = json!({
        "protocolVersion": LATEST_SESSION_VERSION,
        "capabilities": d.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "serverInfo": info,
    });
    if let Some(i) = d.get("instructions") {
        r["instructions"] = i.clone();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_becomes_an_initialize_result_with_server_info() {
        let d = json!({"capabilities": {"tools": {}}, "instructions": "hi",
            "_meta": {SERVER_INFO_META: {"name": "up", "version": "2"}}});
        let r = init_from_discovery(&d);
        assert_eq!(r["serverInfo"], json!({"name": "up", "version": "2"}));
        assert_eq!(r["capabilities"], json!({"tools": {}}));
        assert_eq!(r["instructions"], "hi");
        assert_eq!(r["protocolVersion"], LATEST_SESSION_VERSION);
        // No identity at all: still an object, as session-era clients require.
        assert!(init_from_discovery(&json!({}))["serverInfo"].is_object());
    }

    #[test]
    fn caches_answer_what_they_were_told() {
        let p = Profiles::default();
        assert_eq!(p.discovery("http://a/mcp"), None);
        p.remember_discovery("http://a/mcp", None);
        assert_eq!(p.discovery("http://a/mcp"), Some(None));
        let id = ServerId::parse("s1").expect("valid id");
        p.remember_init(&id, "2025-06-18", &json!({"x": 1}));
        assert_eq!(p.init(&id), Some(("2025-06-18".to_owned(), json!({"x": 1}))));
    }
}
