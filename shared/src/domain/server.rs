//! Servers: a logical upstream MCP server with its endpoints, upstream headers and pool.
//!
//! The types here cannot hold invalid values: a [`ServerId`] is safe inside a Redis key, a hash
//! tag and a URL path segment; an [`Endpoint`] is an absolute http(s) URL with a weight in range;
//! [`UpstreamHeaders`] only hold header names and values that can go on the wire, and never print
//! their values (they are the server's own credentials).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::pool::{present, FieldError, PoolConfig, PoolConfigPatch, DEFAULTED_FIELDS};

pub const MAX_SERVER_ID_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_ENDPOINTS: usize = 32;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_ENDPOINT_WEIGHT: i64 = 1000;
pub const DEFAULT_ENDPOINT_WEIGHT: u32 = 1;
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_VALUE_LEN: usize = 8192;

/// Path segments under `/api/servers/` that are routes, not servers.
const RESERVED_IDS: [&str; 2] = ["pools", "bulk-update"];

/// Headers the gateway itself owns on upstream requests; a server may not override them.
const FORBIDDEN_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// A server id: 1–64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
/// No `{`, `}` or `:`, so it can sit inside a Redis Cluster hash tag and a key without escaping.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServerId(String);

impl ServerId {
    pub fn parse(raw: &str) -> Result<ServerId, FieldError> {
        let rule = "must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit";
        let ok_len = !raw.is_empty() && raw.len() <= MAX_SERVER_ID_LEN;
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let ok_start = raw.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        if !(ok_len && ok_chars && ok_start) {
            return Err(FieldError::new("id", format!("{rule} (got {raw:?})")));
        }
        if RESERVED_IDS.contains(&raw) {
            return Err(FieldError::new("id", format!("{raw:?} is a reserved word")));
        }
        Ok(ServerId(raw.to_owned()))
    }

    /// A fresh random id for servers registered without one.
    pub fn generate() -> ServerId {
        ServerId(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One Streamable HTTP URL of the server's replicas and its share of new bindings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub url: String,
    pub weight: u32,
}

/// An endpoint as a client sends it: weight optional.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    pub url: String,
    #[serde(default)]
    pub weight: Option<i64>,
}

impl Endpoint {
    fn parse(index: usize, input: &EndpointInput) -> Result<Endpoint, FieldError> {
        let field = format!("endpoints[{index}].url");
        if input.url.len() > MAX_URL_LEN {
            return Err(FieldError::new(
                field,
                format!("must be at most {MAX_URL_LEN} characters"),
            ));
        }
        let parsed = url::Url::parse(&input.url)
            .map_err(|e| FieldError::new(field.clone(), format!("must be an absolute http(s) URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(FieldError::new(field, "must be an absolute http(s) URL with a host"));
        }
        if parsed.fragment().is_some() {
            return Err(FieldError::new(field, "must not contain a fragment"));
        }
        let weight = match input.weight {
            None => DEFAULT_ENDPOINT_WEIGHT,
            Some(w) if (1..=MAX_ENDPOINT_WEIGHT).contains(&w) => w as u32,
            Some(w) => {
                return Err(FieldError::new(
                    format!("endpoints[{index}].weight"),
                    format!("must be between 1 and {MAX_ENDPOINT_WEIGHT} (got {w})"),
                ))
            }
        };
        Ok(Endpoint {
            url: parsed.to_string(),
            weight,
        })
    }

    pub fn parse_list(inputs: &[EndpointInput]) -> Result<Vec<Endpoint>, FieldError> {
        if inputs.is_empty() || inputs.len() > MAX_ENDPOINTS {
            return Err(FieldError::new(
                "endpoints",
                format!("must hold 1 to {MAX_ENDPOINTS} endpoints (got {})", inputs.len()),
            ));
        }
        let list = inputs
            .iter()
            .enumerate()
            .map(|(i, e)| Endpoint::parse(i, e))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, e) in list.iter().enumerate() {
            if list[..i].iter().any(|o| o.url == e.url) {
                return Err(FieldError::new(
                    format!("endpoints[{i}].url"),
                    "duplicates an earlier endpoint",
                ));
            }
        }
        Ok(list)
    }
}

/// Headers sent to the upstream on every request (e.g. its API key). Debug and Serialize show
/// names only; the values leave this type only through [`UpstreamHeaders::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders(BTreeMap<String, String>);

/// What a response shows in place of a header value.
pub const REDACTED: &str = "[redacted]";

impl UpstreamHeaders {
    pub fn parse(input: &BTreeMap<String, String>) -> Result<UpstreamHeaders, FieldError> {
        if input.len() > MAX_HEADERS {
            return Err(FieldError::new("headers", format!("at most {MAX_HEADERS} headers")));
        }
        let mut out = BTreeMap::new();
        for (name, value) in input {
            let field = format!("headers.{name}");
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(FieldError::new(field, "header name must be an HTTP token"));
            }
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
                return Err(FieldError::new(field, "is set by the gateway and cannot be overridden"));
            }
            if value.len() > MAX_HEADER_VALUE_LEN || value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(FieldError::new(
                    field,
                    format!("value must be at most {MAX_HEADER_VALUE_LEN} bytes with no control characters"),
                ));
            }
            if out.insert(lower, value.clone()).is_some() {
                return Err(FieldError::new(
                    field,
                    "duplicates another header (names are case-insensitive)",
                ));
            }
        }
        Ok(UpstreamHeaders(out))
    }

    /// The values, for the upstream client and the store only.
    pub fn expose(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The headers as request pairs, for the upstream client.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn from_stored(map: BTreeMap<String, String>) -> Self {
        UpstreamHeaders(map)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for UpstreamHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, REDACTED))).finish()
    }
}

impl Serialize for UpstreamHeaders {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.keys().map(|k| (k, REDACTED)))
    }
}

/// A registered server as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    #[serde(rename = "headers")]
    pub upstream_headers: UpstreamHeaders,
    #[serde(flatten)]
    pub pool: PoolConfig,
    /// Pool fields never set explicitly: they follow `POOL_DEFAULT_*` (the values above are the
    /// effective ones), so lowering a default and restarting applies to existing servers too.
    #[serde(rename = "pool_following_defaults", skip_serializing_if = "BTreeSet::is_empty")]
    pub pool_defaults: BTreeSet<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/servers` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServerInput {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub endpoints: Vec<EndpointInput>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Pool fields that follow `POOL_DEFAULT_*` even if the body also gives a value (a server
    /// re-created from an export keeps following the defaults it followed).
    #[serde(default)]
    pub pool_following_defaults: Vec<String>,
    /// Pool fields of the same body, split off by the caller (see `PATCH_FIELDS`).
    #[serde(skip)]
    pub pool: PoolConfigPatch,
}

/// `PUT /api/servers/{id}` body: every field optional (partial update).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPatch {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub endpoints: Option<Vec<EndpointInput>>,
    /// Replaces the whole header set when present.
    #[serde(default, deserialize_with = "present")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Pool fields of the same body, split off by the caller (see `PATCH_FIELDS`).
    #[serde(skip)]
    pub pool: PoolConfigPatch,
}

fn parse_name(name: &str) -> Result<String, FieldError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_LEN || trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            format!("must be 1-{MAX_NAME_LEN} characters with no control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

impl Server {
    /// Validates a registration; `defaults` are the configured `POOL_DEFAULT_*` values.
    pub fn from_input(input: &NewServerInput, defaults: &PoolConfig, now: DateTime<Utc>) -> Result<Server, FieldError> {
        for (i, f) in input.pool_following_defaults.iter().enumerate() {
            if !DEFAULTED_FIELDS.contains(&f.as_str()) {
                return Err(FieldError::new(
                    format!("pool_following_defaults[{i}]"),
                    format!(
                        "must name a pool field with a POOL_DEFAULT_* setting: {}",
                        DEFAULTED_FIELDS.join(", ")
                    ),
                ));
            }
        }
        let set = input.pool.sets();
        let follow: BTreeSet<String> = DEFAULTED_FIELDS
            .into_iter()
            .filter(|f| !set.contains(f) || input.pool_following_defaults.iter().any(|g| g == f))
            .map(str::to_owned)
            .collect();
        let id = match &input.id {
            Some(raw) => ServerId::parse(raw)?,
            None => ServerId::generate(),
        };
        Ok(Server {
            id,
            name: parse_name(&input.name)?,
            endpoints: Endpoint::parse_list(&input.endpoints)?,
            upstream_headers: UpstreamHeaders::parse(&input.headers)?,
            pool: defaults.apply(&input.pool)?.following(defaults, &follow),
            pool_defaults: follow,
            created_at: now,
            updated_at: now,
        })
    }

    /// The server after `patch`, or the first rule it breaks; `self` is untouched either way.
    pub fn patched(&self, patch: &ServerPatch, now: DateTime<Utc>) -> Result<Server, FieldError> {
        let mut next = self.clone();
        if let Some(name) = &patch.name {
            next.name = parse_name(name)?;
        }
        if let Some(endpoints) = &patch.endpoints {
            next.endpoints = Endpoint::parse_list(endpoints)?;
        }
        if let Some(headers) = &patch.headers {
            next.upstream_headers = UpstreamHeaders::parse(headers)?;
        }
        next.pool = self.pool.apply(&patch.pool)?;
        next.set_explicitly(&patch.pool);
        next.updated_at = now;
        Ok(next)
    }

    /// The fields `patch` sets no longer follow the defaults.
    pub fn set_explicitly(&mut self, patch: &PoolConfigPatch) {
        for f in patch.sets() {
            self.pool_defaults.remove(f);
        }
    }

    /// Takes the fields that follow the defaults from `defaults` (`POOL_DEFAULT_*`).
    pub fn follow_defaults(&mut self, defaults: &PoolConfig) {
        if !self.pool_defaults.is_empty() {
            self.pool = self.pool.following(defaults, &self.pool_defaults);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids() {
        for ok in ["server-1", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(ServerId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "a{b}",
            "a:b",
            "ü",
            "pools",
            "bulk-update",
            &"x".repeat(65),
        ] {
            assert_eq!(ServerId::parse(bad).map_err(|e| e.field), Err("id".to_owned()), "{bad}");
        }
    }

    #[test]
    fn endpoints_are_checked_one_by_one() {
        let input = |url: &str, weight: Option<i64>| EndpointInput {
            url: url.into(),
            weight,
        };
        assert!(Endpoint::parse_list(&[input("http://127.0.0.1:8080/mcp", None)]).is_ok());
        let err = Endpoint::parse_list(&[input("http://a/mcp", None), input("ftp://b/", None)]).expect_err("ftp");
        assert_eq!(err.field, "endpoints[1].url");
        let err = Endpoint::parse_list(&[input("http://a/mcp", Some(0))]).expect_err("weight");
        assert_eq!(err.field, "endpoints[0].weight");
        let err = Endpoint::parse_list(&[]).expect_err("empty");
        assert_eq!(err.field, "endpoints");
        let err = Endpoint::parse_list(&[input("http://a/mcp", None), input("http://a/mcp", None)]).expect_err("dup");
        assert_eq!(err.field, "endpoints[1].url");
    }

    #[test]
    fn header_values_never_print() {
        let mut raw = BTreeMap::new();
        raw.insert("X-Api-Key".to_owned(), "s3cret-value".to_owned());
        let headers = UpstreamHeaders::parse(&raw).expect("valid");
        assert!(!format!("{headers:?}").contains("s3cret"));
        let json = serde_json::to_string(&headers).expect("serialize");
        assert!(!json.contains("s3cret"), "{json}");
        assert_eq!(
            headers.expose().get("x-api-key").map(String::as_str),
            Some("s3cret-value")
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        for (name, value) in [("Mcp-Session-Id", "x"), ("bad name", "x"), ("X-Ok", "a\r\nb")] {
            let mut raw = BTreeMap::new();
            raw.insert(name.to_owned(), value.to_owned());
            let err = UpstreamHeaders::parse(&raw).expect_err(name);
            assert_eq!(err.field, format!("headers.{name}"));
        }
    }
}
