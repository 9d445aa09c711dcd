//! Load shedding and the request-body deadline: what the node does with a request before any
//! handler works on it (SPEC §9, "Clients").
//!
//! - **Concurrency cap** (`SERVER_MAX_CONCURRENT_REQUESTS`): a request enters the node's
//!   in-flight count ([`crate::drain::Tracker`], the one graceful shutdown waits on) only if the
//!   count is below the cap, in one atomic step. Over it the answer is an immediate 503 with
//!   `Retry-After` — a JSON-RPC error on the MCP endpoint, the API's JSON error elsewhere — so
//!   an overloaded node costs its clients one round trip, not a queue, and they retry elsewhere.
//!   Probes (`/health`, `/ready`, `/metrics`) never count and are never shed: an orchestrator must
//!   see an overloaded node as alive. Standalone MCP GET streams are not counted either (they are
//!   long-lived, hold no answer and are bounded by client sessions), so a node full of open
//!   streams still serves requests.
//! - **Body deadline** (`SERVER_BODY_READ_TIMEOUT`): the whole request body must arrive within
//!   the timeout of the request head. tower-http's `RequestBodyTimeoutLayer` is not used: it
//!   times the gap between frames, so a body sent at 1 byte/s never trips it. The deadline is
//!   one timer per request with a body, armed when the head is read; it bounds only the request
//!   body — the answer, however long it streams (SSE), is never timed by it. A request whose body
//!   missed the deadline is answered 408 with `Connection: close`, so the connection goes too.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::error::ApiError;
use super::mcp::McpError;

/// The kinds of route, as metrics label them and admission treats them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Mcp,
    Admin,
    /// `/health`, `/ready`, `/metrics` (and unknown paths): never shed, never drained.
    Probe,
}

impl RouteKind {
    pub fn of(path: &str) -> RouteKind {
        if path.starts_with("/servers/") {
            RouteKind::Mcp
        } else if path.starts_with("/api/") {
            RouteKind::Admin
        } else {
            RouteKind::Probe
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RouteKind::Mcp => "mcp",
            RouteKind::Admin => "admin",
            RouteKind::Probe => "probe",
        }
    }
}

/// The 503 for a request over the node's concurrency cap.
pub fn overloaded(kind: RouteKind) -> Response {
    let mut response = match kind {
        RouteKind::Mcp => McpError::Overloaded.out_of_band(),
        RouteKind::Admin | RouteKind::Probe => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "this node is at its limit of concurrent requests; retry (any node serves any request)",
        )
        .into_response(),
    };
    // Both error types already set `Retry-After: 1`; say it here too, where it is the contract.
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The 408 for a request whose body missed its deadline; the connection is closed after it.
pub fn body_timed_out(kind: RouteKind, timeout: Duration) -> Response {
    let mut response = match kind {
        RouteKind::Mcp => McpError::BodyTimeout(timeout).out_of_band(),
        RouteKind::Admin | RouteKind::Probe => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("request body not received within {}s", timeout.as_secs()),
        )
        .into_response(),
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Gives the request body a deadline `timeout` from now. The flag turns true if the deadline
/// passed before the body was complete (the handler then saw a body error).
pub fn with_body_deadline(
    request: axum::extract::Request,
    timeout: Duration,
) -> (axum::extract::Request, Arc<AtomicBool>) {
    let missed = Arc::new(AtomicBool::new(false));
    if http_body::Body::is_end_stream(request.body()) {
        return (request, missed);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let flag = missed.clone();
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            missed: flag,
        })
    });
    (request, missed)
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    missed: Arc<AtomicBool>,
}

/// The body error a handler sees when the deadline passed.
#[derive(Debug)]
struct BodyDeadlinePassed;

impl std::fmt::Display for BodyDeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body not received in time")
    }
}

impl std::error::Error for BodyDeadlinePassed {}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // The deadline first: a client trickling bytes always has a frame "almost" ready.
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.missed.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadlinePassed))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
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
    async fn a_body_that_misses_its_deadline_fails_and_says_so() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let (request, missed) = with_body_deadline(axum::http::Request::new(body), Duration::from_millis(100));
        tx.send(Ok(Bytes::from_static(b"{"))).await.expect("send");
        let collected = axum::body::to_bytes(request.into_body(), 1024).await;
        assert!(collected.is_err(), "the body never completes: the deadline ends it");
        assert!(missed.load(Ordering::SeqCst));
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_in_time_is_untouched() {
        let request = axum::http::Request::new(Body::from("{\"a\":1}"));
        let (request, missed) = with_body_deadline(request, Duration::from_secs(2));
        let bytes = axum::body::to_bytes(request.into_body(), 1024).await.expect("body");
        assert_eq!(&bytes[..], b"{\"a\":1}");
        assert!(!missed.load(Ordering::SeqCst));
    }
}
