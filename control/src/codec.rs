//! Values stored in the control plane, as versioned MessagePack (maps with named fields).
//!
//! The Lua scripts read and write slot records with Redis's built-in `cmsgpack`; Rust reads them
//! with `rmp-serde`. New fields get `#[serde(default)]` and unknown fields are ignored, so nodes of
//! two releases can share one Redis during a rollout (SPEC §8).

use serde::{Deserialize, Serialize};

/// Version of the slot record layout written by this release.
pub const SLOT_RECORD_VERSION: u32 = 1;

/// A slot's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// Selectable (when it has spare capacity).
    Ready,
    /// Finishing what it holds; no new leases or bindings except for keys already bound to it.
    Draining,
    /// Failed a health check or a request; leaves the pool once idle.
    Unhealthy,
    /// Will never be used again (recycled, or its session-isolated binding ended).
    Retired,
    /// Removed from the pool: the caller should close its upstream session.
    Closed,
}

/// What a node records about the upstream session behind a slot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotMeta {
    /// The upstream `Mcp-Session-Id` (none for a sessionless 2026-07-28 upstream).
    #[serde(default)]
    pub session_id: Option<String>,
    /// Negotiated protocol version.
    #[serde(default)]
    pub protocol_version: Option<String>,
    /// The endpoint URL the session lives at.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The upstream's `initialize` result (JSON text), cached so a client's `initialize` is
    /// answered without a handshake of its own.
    #[serde(default)]
    pub init: Option<String>,
}

impl SlotMeta {
    /// MessagePack map encoding, as the commit script expects.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding a struct of optional strings into a Vec cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }
}

/// One slot as the scripts store it. Short field names keep Redis memory per slot small.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotRecord {
    #[serde(default)]
    pub v: u32,
    pub id: String,
    #[serde(rename = "st")]
    pub state: SlotState,
    /// Index of the endpoint in the server's endpoint list.
    #[serde(rename = "ep")]
    pub endpoint: u32,
    /// The endpoint's configured weight.
    #[serde(rename = "w", default)]
    pub weight: f64,
    /// Active leases (I2: never above the pool's session capacity).
    #[serde(rename = "l")]
    pub leases: u32,
    /// Bindings to this slot.
    #[serde(rename = "b")]
    pub bindings: u32,
    /// Creation order (round-robin order).
    pub seq: u64,
    /// Created, ms since the epoch (control-plane time).
    #[serde(rename = "c")]
    pub created_ms: i64,
    /// Last leased, ms since the epoch.
    #[serde(rename = "u")]
    pub last_used_ms: i64,
    /// Leases granted so far.
    #[serde(rename = "r")]
    pub reuse_count: u64,
    /// Latency EWMA in ms.
    #[serde(rename = "ew", default)]
    pub latency_ewma_ms: f64,
    /// Error-rate EWMA, 0..1.
    #[serde(rename = "er", default)]
    pub error_rate: f64,
    /// Weighted strategy's virtual pass.
    #[serde(default)]
    pub pass: f64,
    /// 1 once bound in session isolation: never handed to another session (I8).
    #[serde(default)]
    pub used: u8,
    #[serde(rename = "m", default)]
    pub meta: SlotMeta,
}

impl SlotRecord {
    pub fn decode(bytes: &[u8]) -> Result<SlotRecord, String> {
        rmp_serde::from_slice(bytes).map_err(|e| format!("bad slot record: {e}"))
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknown_fields_are_ignored() {
        let rec = SlotRecord {
            v: 1,
            id: "s1".into(),
            state: SlotState::Ready,
            endpoint: 0,
            weight: 1.0,
            leases: 2,
            bindings: 1,
            seq: 7,
            created_ms: 1,
            last_used_ms: 2,
            reuse_count: 3,
            latency_ewma_ms: 1.5,
            error_rate: 0.25,
            pass: 10.0,
            used: 0,
            meta: SlotMeta {
                session_id: Some("abc".into()),
                protocol_version: None,
                endpoint: None,
                init: None,
            },
        };
        assert_eq!(SlotRecord::decode(&rec.encode()), Ok(rec.clone()));
        // A newer release's record with an extra field still decodes.
        #[derive(Serialize)]
        struct Newer<'a> {
            #[serde(flatten)]
            base: &'a SlotRecord,
            future_field: &'a str,
        }
        let bytes = rmp_serde::to_vec_named(&Newer {
            base: &rec,
            future_field: "x",
        })
        .expect("encode");
        assert_eq!(SlotRecord::decode(&bytes), Ok(rec));
    }

    #[test]
    fn integers_decode_into_float_fields() {
        // Lua's cmsgpack writes integral doubles as integers.
        #[derive(Serialize)]
        struct Lua {
            id: &'static str,
            st: &'static str,
            ep: u32,
            w: u32,
            l: u32,
            b: u32,
            seq: u64,
            c: i64,
            u: i64,
            r: u64,
            ew: u32,
            er: u32,
            pass: u32,
        }
        let bytes = rmp_serde::to_vec_named(&Lua {
            id: "s",
            st: "draining",
            ep: 1,
            w: 3,
            l: 0,
            b: 0,
            seq: 1,
            c: 5,
            u: 5,
            r: 0,
            ew: 0,
            er: 0,
            pass: 0,
        })
        .expect("encode");
        let rec = SlotRecord::decode(&bytes).expect("decode");
        assert_eq!((rec.state, rec.weight, rec.v), (SlotState::Draining, 3.0, 0));
    }
}
