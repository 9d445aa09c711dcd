//! `upstream.*`: what a node accepts from the upstream MCP servers it does not control — the
//! size of one answer and of one SSE event, how long a forwarded request may take — and when an
//! endpoint's circuit breaker opens — and, in `tls.rs`, what it trusts and presents over HTTPS.

use std::time::Duration;

use super::keys;
use super::sources::Sources;
use super::tls::TlsSettings;
use super::{ConfigError, Summary};

/// A JSON answer, or all the bytes of one streamed answer to a request.
pub const DEFAULT_UPSTREAM_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// One SSE event, all its lines together.
pub const DEFAULT_UPSTREAM_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_UPSTREAM_REQUEST_TIMEOUT: u64 = 300;
/// Consecutive failures (failed session creations, transport failures) that open an endpoint's
/// breaker; 0 turns breakers off.
pub const DEFAULT_UPSTREAM_BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker refuses new sessions before one probe may try again.
pub const DEFAULT_UPSTREAM_BREAKER_OPEN_SECONDS: u64 = 30;
/// Smallest accepted size limit: a JSON-RPC error answer must fit.
const MIN_LIMIT_BYTES: usize = 1024;

/// `upstream.*`.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    pub max_response_bytes: usize,
    pub max_event_bytes: usize,
    pub request_timeout: Duration,
    pub breaker_threshold: u32,
    pub breaker_open: Duration,
    /// `upstream.tls.*` (`POOL_TLS_*`).
    pub tls: TlsSettings,
}

impl UpstreamSettings {
    pub(super) fn load(src: &Sources<'_>) -> Result<UpstreamSettings, ConfigError> {
        Ok(UpstreamSettings {
            max_response_bytes: src.get(
                &keys::UPSTREAM_MAX_RESPONSE_BYTES,
                DEFAULT_UPSTREAM_MAX_RESPONSE_BYTES,
                "must be a number of bytes",
            )?,
            max_event_bytes: src.get(
                &keys::UPSTREAM_MAX_EVENT_BYTES,
                DEFAULT_UPSTREAM_MAX_EVENT_BYTES,
                "must be a number of bytes",
            )?,
            request_timeout: src.get_secs(&keys::UPSTREAM_REQUEST_TIMEOUT, DEFAULT_UPSTREAM_REQUEST_TIMEOUT)?,
            breaker_threshold: src.get(
                &keys::UPSTREAM_BREAKER_THRESHOLD,
                DEFAULT_UPSTREAM_BREAKER_THRESHOLD,
                "must be a whole number of failures (0 = no breaker)",
            )?,
            breaker_open: src.get_secs(
                &keys::UPSTREAM_BREAKER_OPEN_SECONDS,
                DEFAULT_UPSTREAM_BREAKER_OPEN_SECONDS,
            )?,
            tls: TlsSettings::load(src)?,
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            (&keys::UPSTREAM_MAX_RESPONSE_BYTES, self.max_response_bytes),
            (&keys::UPSTREAM_MAX_EVENT_BYTES, self.max_event_bytes),
        ] {
            if v < MIN_LIMIT_BYTES {
                return Err(ConfigError::invalid(
                    key.env,
                    format!("must be at least {MIN_LIMIT_BYTES} bytes (got {v})"),
                ));
            }
        }
        if self.max_event_bytes > self.max_response_bytes {
            return Err(ConfigError::invalid(
                keys::UPSTREAM_MAX_EVENT_BYTES.env,
                format!(
                    "must not exceed UPSTREAM_MAX_RESPONSE_BYTES ({} > {}): an event is part of an answer",
                    self.max_event_bytes, self.max_response_bytes
                ),
            ));
        }
        self.tls.validate()
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        out.extend([
            (
                keys::UPSTREAM_MAX_RESPONSE_BYTES.env,
                self.max_response_bytes.to_string(),
            ),
            (keys::UPSTREAM_MAX_EVENT_BYTES.env, self.max_event_bytes.to_string()),
            (
                keys::UPSTREAM_REQUEST_TIMEOUT.env,
                self.request_timeout.as_secs().to_string(),
            ),
            (keys::UPSTREAM_BREAKER_THRESHOLD.env, self.breaker_threshold.to_string()),
            (
                keys::UPSTREAM_BREAKER_OPEN_SECONDS.env,
                self.breaker_open.as_secs().to_string(),
            ),
        ]);
        self.tls.summary(out);
    }
}
