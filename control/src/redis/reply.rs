//! Reading script replies: Redis values into typed results. Every reply shape is decoded here
//! once (a tagged reply's lease, a `{changed, records…}` list, script error codes); each
//! operation in `control/ops/` turns its reply into its own result type with these.

use fred::prelude::{Error as FredError, ErrorKind};
use fred::types::Value;

use crate::{Changed, ControlError, Lease, SlotRecord};

pub(crate) fn classify(e: FredError) -> ControlError {
    match e.kind() {
        ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::IO => ControlError::OutcomeUnknown(e.to_string()),
        ErrorKind::Config | ErrorKind::Url | ErrorKind::Auth => ControlError::Config(e.to_string()),
        ErrorKind::Cluster | ErrorKind::Routing | ErrorKind::Backpressure | ErrorKind::Sentinel => {
            ControlError::Unavailable(e.to_string())
        }
        _ if e.details().starts_with("LOADING") || e.details().starts_with("READONLY") => {
            ControlError::Unavailable(e.to_string())
        }
        _ => ControlError::Protocol(e.to_string()),
    }
}

pub(crate) fn protocol(what: &str, v: &Value) -> ControlError {
    ControlError::Protocol(format!("{what}: {v:?}"))
}

pub(crate) fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        Value::Null => vec![],
        other => vec![other],
    }
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

pub(crate) fn record(v: &Value) -> Result<SlotRecord, ControlError> {
    let bytes: &[u8] = match v {
        Value::Bytes(b) => b,
        Value::String(s) => s.as_bytes(),
        other => return Err(protocol("slot record", other)),
    };
    SlotRecord::decode(bytes).map_err(ControlError::Protocol)
}

/// `{'L', lease_id, slot_id, record, expires, fresh}` → a lease.
pub(crate) fn lease(reply: &[Value]) -> Result<Lease, ControlError> {
    let (Some(id), Some(rec), Some(exp), Some(fresh)) = (reply.get(1), reply.get(3), reply.get(4), reply.get(5)) else {
        return Err(ControlError::Protocol(format!("short lease reply: {reply:?}")));
    };
    Ok(Lease {
        id: text(id).ok_or_else(|| protocol("lease id", id))?,
        slot: record(rec)?,
        expires_ms: int(exp).ok_or_else(|| protocol("expiry", exp))?,
        fresh: int(fresh) == Some(1),
    })
}

pub(crate) fn script_error(code: &str) -> ControlError {
    match code {
        "NOCONFIG" => ControlError::NotConfigured,
        "BINDING_LOST" => ControlError::BindingLost,
        "NORESV" => ControlError::ReservationGone,
        "OPEN" => ControlError::CircuitOpen,
        other => ControlError::Protocol(format!("script error {other}")),
    }
}

/// `{changed, records...}` → [`Changed`].
pub(crate) fn changed(reply: Vec<Value>) -> Result<Changed, ControlError> {
    let mut it = reply.into_iter();
    let flag = it.next().map(|v| int(&v) == Some(1)).unwrap_or(false);
    let closed = it.map(|v| record(&v)).collect::<Result<Vec<_>, _>>()?;
    Ok(Changed { changed: flag, closed })
}

/// The tag of a tagged reply (`{'L', …}`, `{'R', …}`, …).
pub(crate) fn tag(reply: &[Value]) -> Option<String> {
    reply.first().and_then(text)
}

/// `{tag, newest}` of a fenced script that refused an older leader's token.
pub(crate) fn stale_fence(reply: &[Value]) -> ControlError {
    ControlError::StaleFence {
        newest: reply.get(1).and_then(int).unwrap_or(0) as u64,
    }
}

/// A reply that matches no shape the script returns.
pub(crate) fn unexpected(script: &str, reply: &[Value]) -> ControlError {
    ControlError::Protocol(format!("{script} reply {reply:?}"))
}
