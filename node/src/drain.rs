//! Graceful shutdown (SPEC §8). On SIGTERM a node turns `/ready` 503 at once and refuses new
//! client requests with 503 (the load balancer has, or soon will have, taken it out of rotation;
//! clients retry elsewhere — their session ids work on any node). Requests already running,
//! streams included, finish within `SHUTDOWN_GRACE_SECONDS`; their leases are released as they
//! end. Bindings stay in the control plane, so every client session continues on another node.
//!
//! [`Tracker`] counts what is in flight — requests until their response body is done, lease
//! releases until the control plane answered — so shutdown waits on an event, not a timer.

pub use poolgate_shared::shutdown::{Guard, Tracker};

/// A response body that holds a [`Guard`] until it is fully sent (or dropped), keeping the
/// request counted while a stream is still flowing. Size and end-of-stream pass through, so a
/// JSON answer keeps its Content-Length.
pub struct TrackedBody {
    inner: axum::body::Body,
    _guard: Guard,
}

impl TrackedBody {
    pub fn wrap(inner: axum::body::Body, guard: Guard) -> axum::body::Body {
        axum::body::Body::new(TrackedBody { inner, _guard: guard })
    }
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
