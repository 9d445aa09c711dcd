//! Bearer tokens: HS256 JWTs signed with `JWT_SECRET_KEY`.
//!
//! Hand-rolled on `hmac`/`sha2` rather than a JWT crate: poolgate accepts exactly one algorithm,
//! so the whole format is a few lines, and refusing every other `alg` (including `none`) is explicit
//! rather than a library option. Signatures are compared in constant time by `hmac`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 30;
/// The permission that grants admin writes without an admin role (seed 001).
pub const ADMIN_PERMISSION: &str = "servers.update";
/// Longest token accepted; anything larger is refused before any work.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Expiry, seconds since the Unix epoch. Required: a token that never expires is refused.
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
}

impl Claims {
    /// Whether the holder may change pools and servers.
    pub fn is_admin(&self, admin_roles: &[String]) -> bool {
        self.roles.iter().any(|r| admin_roles.contains(r)) || self.permissions.iter().any(|p| p == ADMIN_PERMISSION)
    }
}

/// Why a token was refused. Messages are safe to show the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token algorithm must be HS256")]
    UnsupportedAlgorithm,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    /// `JWT_ISSUER` is set and the token's `iss` is another (or missing).
    #[error("token iss claim is not the expected issuer")]
    WrongIssuer,
    /// `JWT_AUDIENCE` is set and the token's `aud` does not name it.
    #[error("token aud claim does not name this service")]
    WrongAudience,
}

/// The registered claims checked when configured (`aud` may be one string or a list).
#[derive(Deserialize)]
struct Registered {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, expected: &str) -> bool {
        match self {
            Audience::One(a) => a == expected,
            Audience::Many(all) => all.iter().any(|a| a == expected),
        }
    }
}

/// An HS256 signing key, former keys still accepted for verification (rotation), and the issuer
/// and audience tokens must name when configured.
#[derive(Clone)]
pub struct JwtKey {
    secret: Vec<u8>,
    /// `JWT_SECRET_KEY_FALLBACKS`: tokens signed with these still verify; nothing is signed with them.
    fallbacks: Vec<Vec<u8>>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey([redacted])")
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

impl JwtKey {
    pub fn new(secret: &[u8]) -> Self {
        JwtKey {
            secret: secret.to_vec(),
            fallbacks: Vec::new(),
            issuer: None,
            audience: None,
        }
    }

    /// Also requires `iss` to equal `issuer` and `aud` to name `audience` (each when given).
    pub fn expecting(mut self, issuer: Option<&str>, audience: Option<&str>) -> Self {
        self.issuer = issuer.map(str::to_owned);
        self.audience = audience.map(str::to_owned);
        self
    }

    /// Also accepts tokens signed with any of `fallbacks` (former secrets, during a rotation).
    pub fn with_fallbacks<S: AsRef<[u8]>>(mut self, fallbacks: &[S]) -> Self {
        self.fallbacks = fallbacks.iter().map(|f| f.as_ref().to_vec()).collect();
        self
    }

    fn mac(&self) -> HmacSha256 {
        mac_with(&self.secret)
    }

    /// Signs `claims` into a compact JWT (with the configured `iss` and `aud`, if any, so that
    /// tokens this key mints pass its own checks).
    pub fn mint(&self, claims: &Claims) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        // Serializing a struct of strings and integers cannot fail.
        let mut body = serde_json::to_value(claims).unwrap_or_default();
        if let Some(obj) = body.as_object_mut() {
            if let Some(i) = &self.issuer {
                obj.insert("iss".into(), i.clone().into());
            }
            if let Some(a) = &self.audience {
                obj.insert("aud".into(), a.clone().into());
            }
        }
        let payload = B64.encode(serde_json::to_vec(&body).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Checks signature, algorithm and time claims at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header_bytes = B64
            .decode(h)
            .map_err(|_| TokenError::Malformed("header is not base64url"))?;
        let header: Header =
            serde_json::from_slice(&header_bytes).map_err(|_| TokenError::Malformed("header is not JSON"))?;
        if header.alg != "HS256" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let sig = B64
            .decode(s)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let signed_by = |secret: &[u8]| {
            let mut mac = mac_with(secret);
            mac.update(h.as_bytes());
            mac.update(b".");
            mac.update(p.as_bytes());
            mac.verify_slice(&sig).is_ok()
        };
        if !(signed_by(&self.secret) || self.fallbacks.iter().any(|f| signed_by(f))) {
            return Err(TokenError::BadSignature);
        }
        let payload = B64
            .decode(p)
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("claims must be JSON with string sub and numeric exp"))?;
        if claims.sub.is_empty() {
            return Err(TokenError::Malformed("sub must not be empty"));
        }
        // Saturating: an `exp` near i64::MAX is far future, not an overflow.
        if claims.exp.saturating_add(LEEWAY_SECONDS) <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECONDS) > now) {
            return Err(TokenError::NotYetValid);
        }
        if self.issuer.is_some() || self.audience.is_some() {
            let registered: Registered = serde_json::from_slice(&payload)
                .map_err(|_| TokenError::Malformed("iss must be a string and aud a string or a list of strings"))?;
            if self.issuer.as_ref().is_some_and(|i| registered.iss.as_ref() != Some(i)) {
                return Err(TokenError::WrongIssuer);
            }
            if self
                .audience
                .as_deref()
                .is_some_and(|a| !registered.aud.as_ref().is_some_and(|aud| aud.names(a)))
            {
                return Err(TokenError::WrongAudience);
            }
        }
        Ok(claims)
    }
}

fn mac_with(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// A fresh random secret for the embedded single node (64 hex characters, 256 bits).
pub fn generate_secret() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no entropy: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Seconds since the Unix epoch on this node's clock (tokens only; pool expiry uses Redis time).
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            iat: None,
            nbf: None,
            roles: vec!["admin".into()],
            permissions: vec![],
        }
    }

    #[test]
    fn round_trip() {
        let key = JwtKey::new(b"0123456789abcdef0123456789abcdef");
        let token = key.mint(&claims(2_000));
        assert_eq!(key.verify(&token, 1_000), Ok(claims(2_000)));
    }

    #[test]
    fn refusals() {
        let key = JwtKey::new(b"0123456789abcdef0123456789abcdef");
        let other = JwtKey::new(b"another-secret-another-secret-xx");
        let token = key.mint(&claims(2_000));
        assert_eq!(other.verify(&token, 1_000), Err(TokenError::BadSignature));
        assert_eq!(key.verify(&token, 2_000 + LEEWAY_SECONDS), Err(TokenError::Expired));
        assert!(matches!(key.verify("abc", 0), Err(TokenError::Malformed(_))));
        // alg=none with an empty signature must not pass.
        let none_header = B64.encode(br#"{"alg":"none"}"#);
        let payload = token.split('.').nth(1).unwrap_or_default();
        assert_eq!(
            key.verify(&format!("{none_header}.{payload}."), 0),
            Err(TokenError::UnsupportedAlgorithm)
        );
        // A tampered payload fails the signature.
        let forged = B64.encode(br#"{"sub":"mallory","exp":9999999999,"roles":["admin"]}"#);
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged;
        assert_eq!(key.verify(&parts.join("."), 0), Err(TokenError::BadSignature));
    }

    /// Rotation: tokens signed with a former secret verify while it is a fallback; new tokens are
    /// signed with the current one only, and an unrelated secret's tokens never verify.
    #[test]
    fn fallback_keys_verify_tokens_of_a_rotated_secret() {
        let old = JwtKey::new(b"old-secret-old-secret-old-secret");
        let rotated =
            JwtKey::new(b"new-secret-new-secret-new-secret").with_fallbacks(&[b"old-secret-old-secret-old-secret"]);
        let old_token = old.mint(&claims(2_000));
        assert_eq!(rotated.verify(&old_token, 1_000), Ok(claims(2_000)));
        let new_token = rotated.mint(&claims(2_000));
        assert_eq!(
            old.verify(&new_token, 1_000),
            Err(TokenError::BadSignature),
            "minted with the current key"
        );
        let without = JwtKey::new(b"new-secret-new-secret-new-secret");
        assert_eq!(without.verify(&old_token, 1_000), Err(TokenError::BadSignature));
        let stranger = JwtKey::new(b"other-secret-other-secret-other!").mint(&claims(2_000));
        assert_eq!(rotated.verify(&stranger, 1_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let key = JwtKey::new(b"0123456789abcdef0123456789abcdef");
        let far = key.mint(&claims(i64::MAX));
        assert_eq!(key.verify(&far, 1_000), Ok(claims(i64::MAX)));
        let mut c = claims(2_000);
        c.nbf = Some(i64::MIN);
        assert_eq!(key.verify(&key.mint(&c), 1_000), Ok(c));
        assert_eq!(key.verify(&key.mint(&claims(i64::MIN)), 0), Err(TokenError::Expired));
    }

    /// A token carrying `iss`/`aud` as an identity provider mints them (raw payloads: `Claims`
    /// has no such fields).
    fn raw_token(key: &JwtKey, payload: &str) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let input = format!("{header}.{}", B64.encode(payload));
        let mut mac = key.mac();
        mac.update(input.as_bytes());
        format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let key = JwtKey::new(secret).expecting(Some("https://idp.example"), Some("poolgate"));
        let t = |p: &str| raw_token(&key, p);
        let ok = t(r#"{"sub":"a","exp":2000,"iss":"https://idp.example","aud":["other","poolgate"]}"#);
        assert_eq!(key.verify(&ok, 1_000).map(|c| c.sub), Ok("a".to_owned()));
        let one = t(r#"{"sub":"a","exp":2000,"iss":"https://idp.example","aud":"poolgate"}"#);
        assert!(key.verify(&one, 1_000).is_ok());
        for (payload, want) in [
            (r#"{"sub":"a","exp":2000,"aud":"poolgate"}"#, TokenError::WrongIssuer),
            (
                r#"{"sub":"a","exp":2000,"iss":"https://evil.example","aud":"poolgate"}"#,
                TokenError::WrongIssuer,
            ),
            (
                r#"{"sub":"a","exp":2000,"iss":"https://idp.example"}"#,
                TokenError::WrongAudience,
            ),
            (
                r#"{"sub":"a","exp":2000,"iss":"https://idp.example","aud":["x"]}"#,
                TokenError::WrongAudience,
            ),
        ] {
            assert_eq!(key.verify(&t(payload), 1_000), Err(want), "{payload}");
        }
        // What the key mints carries them.
        assert!(key.verify(&key.mint(&claims(2_000)), 1_000).is_ok());
        // Not configured: not checked.
        let plain = JwtKey::new(secret);
        assert!(plain
            .verify(&t(r#"{"sub":"a","exp":2000,"iss":"x","aud":"y"}"#), 1_000)
            .is_ok());
        assert!(TokenError::WrongAudience.to_string().contains("aud"));
        assert!(TokenError::WrongIssuer.to_string().contains("iss"));
    }

    #[test]
    fn admin_by_role_or_permission() {
        let roles = vec!["admin".to_owned(), "operator".to_owned()];
        let mut c = claims(0);
        assert!(c.is_admin(&roles));
        c.roles = vec!["reader".into()];
        assert!(!c.is_admin(&roles));
        c.permissions = vec![ADMIN_PERMISSION.into()];
        assert!(c.is_admin(&roles));
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let a = generate_secret().expect("entropy");
        let b = generate_secret().expect("entropy");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
