//! Client session ids: self-describing and encrypted, so any node can route an existing session
//! with no Redis lookup (SPEC §5), and nobody can forge or read one (I12).
//!
//! An id is `base64url(version ‖ nonce ‖ AES-256-GCM(MessagePack(ClientSession)))` with the
//! version byte as associated data. Keys are derived once at start (HMAC-SHA256 of the secret
//! with a fixed label — no slow KDF per request); the primary key encrypts, the primary and the
//! fallback keys (former secrets) decrypt, so a secret can be rotated without ending sessions.
//! The decoded session names its user; the endpoint compares it with the caller's token.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const LABEL: &[u8] = b"poolgate client session id v1";
/// Longest id accepted; anything longer is not ours.
pub const MAX_ID_LEN: usize = 4096;

/// What a client session id carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSession {
    /// Authenticated subject the session belongs to.
    pub sub: String,
    /// Server id.
    pub srv: String,
    /// Binding key in the control plane (empty when the pool is not used).
    #[serde(default)]
    pub key: String,
    /// Upstream endpoint URL of the bound session.
    #[serde(default)]
    pub url: String,
    /// Upstream `Mcp-Session-Id` (none for sessionless upstreams or shared isolation).
    #[serde(default)]
    pub sid: Option<String>,
    /// Protocol version spoken upstream.
    #[serde(default)]
    pub pv: String,
    /// Protocol version negotiated with the client.
    #[serde(default)]
    pub cv: String,
    /// How the session is served.
    pub mode: SessionMode,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
}

/// How a client session is served. Encoded by name ("bound", "shared", "direct"), as ids
/// issued before this type existed spelled it, so those ids keep working.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// Session isolation: the client owns one upstream session, through its binding.
    Bound,
    /// Shared isolation (or a sessionless upstream): each request leases a slot.
    Shared,
    /// Pooling off: the client's own upstream session, outside any pool.
    Direct,
}

/// Encrypts and decrypts client session ids.
#[derive(Clone)]
pub struct SessionCodec {
    primary: Aes256Gcm,
    fallbacks: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for SessionCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionCodec({} fallback keys)", self.fallbacks.len())
    }
}

fn derive(secret: &[u8]) -> Aes256Gcm {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(LABEL);
    let key = mac.finalize().into_bytes();
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))
}

impl SessionCodec {
    pub fn new(secret: &[u8], fallbacks: &[&[u8]]) -> SessionCodec {
        SessionCodec {
            primary: derive(secret),
            fallbacks: fallbacks.iter().map(|s| derive(s)).collect(),
        }
    }

    pub fn encode(&self, session: &ClientSession) -> Result<String, String> {
        let plain = rmp_serde::to_vec_named(session).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| format!("no entropy: {e}"))?;
        let sealed = self
            .primary
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &[VERSION],
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(B64.encode(out))
    }

    /// The session, or `None` for anything not minted by a current or fallback key (tampered,
    /// truncated, foreign, or garbage) — callers answer 404 either way.
    pub fn decode(&self, id: &str) -> Option<ClientSession> {
        if id.len() > MAX_ID_LEN {
            return None;
        }
        let raw = B64.decode(id).ok()?;
        if raw.len() < 1 + NONCE_LEN + 16 || raw[0] != VERSION {
            return None;
        }
        let (nonce, sealed) = raw[1..].split_at(NONCE_LEN);
        let payload = || Payload {
            msg: sealed,
            aad: &[VERSION],
        };
        let plain = std::iter::once(&self.primary)
            .chain(&self.fallbacks)
            .find_map(|k| k.decrypt(Nonce::from_slice(nonce), payload()).ok())?;
        rmp_serde::from_slice(&plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> ClientSession {
        ClientSession {
            sub: "alice".into(),
            srv: "s1".into(),
            key: "alice:s1:abc".into(),
            url: "http://127.0.0.1:1/mcp".into(),
            sid: Some("up".into()),
            pv: "2025-11-25".into(),
            cv: "2025-06-18".into(),
            mode: SessionMode::Bound,
            iat: 1,
        }
    }

    /// Ids issued by releases that kept the mode as a string decode to the same session.
    #[test]
    fn modes_spelled_as_strings_still_decode() {
        #[derive(Serialize)]
        struct Before<'a> {
            sub: &'a str,
            srv: &'a str,
            key: &'a str,
            url: &'a str,
            sid: Option<&'a str>,
            pv: &'a str,
            cv: &'a str,
            mode: &'a str,
            iat: i64,
        }
        for (word, mode) in [
            ("bound", SessionMode::Bound),
            ("shared", SessionMode::Shared),
            ("direct", SessionMode::Direct),
        ] {
            let before = Before {
                sub: "alice",
                srv: "s1",
                key: "k",
                url: "http://u/mcp",
                sid: Some("abc"),
                pv: "2025-11-25",
                cv: "2025-06-18",
                mode: word,
                iat: 1,
            };
            let bytes = rmp_serde::to_vec_named(&before).expect("encode");
            let now: ClientSession = rmp_serde::from_slice(&bytes).expect("decode");
            assert_eq!(now.mode, mode);
            assert_eq!(now.sub, "alice");
            // And the other way: what this release writes, the old layout reads.
            let back = rmp_serde::to_vec_named(&now).expect("encode");
            let value: serde_json::Value = rmp_serde::from_slice(&back).expect("decode as value");
            assert_eq!(value["mode"], word);
        }
    }

    #[test]
    fn round_trip_rotation_and_tampering() {
        let old = SessionCodec::new(b"old-secret-old-secret-old-secret!!", &[]);
        let new = SessionCodec::new(
            b"new-secret-new-secret-new-secret!!",
            &[b"old-secret-old-secret-old-secret!!"],
        );
        let id = old.encode(&session()).expect("encode");
        assert_eq!(old.decode(&id), Some(session()));
        assert_eq!(new.decode(&id), Some(session()), "fallback key accepts the old id");
        let unrelated = SessionCodec::new(b"other-secret-other-secret-other!!", &[]);
        assert_eq!(unrelated.decode(&id), None);
        // Every single-character change and every truncation is refused.
        let bytes = id.as_bytes();
        for i in 0..bytes.len() {
            let mut t = bytes.to_vec();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(
                old.decode(std::str::from_utf8(&t).expect("ascii")),
                None,
                "tampered at {i}"
            );
        }
        for n in 0..id.len() {
            assert_eq!(old.decode(&id[..n]), None, "truncated to {n}");
        }
        assert_ne!(
            old.encode(&session()).expect("encode"),
            id,
            "random nonce: ids are not guessable"
        );
    }
}
