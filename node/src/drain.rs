//! Graceful shutdown (SPEC §8). On SIGTERM a node turns `/ready` 503 at once and refuses new
//! client requests with 503 (the load balancer has, or soon will have, taken it out of rotation;
//! clients retry elsewhere — their session ids work on any node). Requests already running,
//! streams included, finish within `SHUTDOWN_GRACE_SECONDS`; their leases are released as they
//! end. Bindings stay in the control plane, so every client session continues on another node.
//!
//! [`Tracker`] counts what is in flight — requests until their response body is done, lease
//! releases until the control plane answered — so shutdown waits on an event, not a timer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Counts things in flight and wakes waiters when the count drops to zero.
#[derive(Default)]
pub struct Tracker {
    count: AtomicUsize,
    idle: Notify,
}

/// Held while one thing is in flight; dropping it ends it.
pub struct Guard(Arc<Tracker>);

impl Tracker {
    pub fn enter(self: &Arc<Self>) -> Guard {
        self.count.fetch_add(1, Ordering::SeqCst);
        Guard(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight, or `limit` passed; returns what is still running.
    pub async fn wait_idle(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Register before checking, so a drop to zero in between is not missed.
            idle.as_mut().enable();
            let n = self.in_flight();
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight();
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_last_guard() {
        let t = Arc::new(Tracker::default());
        let (a, b) = (t.enter(), t.enter());
        assert_eq!(t.in_flight(), 2);
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.wait_idle(Duration::from_secs(5)).await })
        };
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        assert_eq!(waiter.await.expect("join"), 0);
    }

    #[tokio::test]
    async fn gives_up_after_the_limit() {
        let t = Arc::new(Tracker::default());
        let _held = t.enter();
        assert_eq!(t.wait_idle(Duration::from_millis(30)).await, 1);
    }
}
