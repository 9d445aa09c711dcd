//! The node's HTTP/1.1 server: the accept loop and what each connection may cost (SPEC §9).
//!
//! `axum::serve` offers no header-read timeout, so connections are served with hyper's own
//! `http1::Builder`: HTTP/1.1 with keep-alive, as before. (`axum::serve`'s auto-detecting builder
//! also took h2c prior-knowledge connections, only because reqwest's `http2` feature reached
//! hyper-util through feature unification; no client, test, ingress or proxy config uses h2c, and
//! every timeout here is an HTTP/1 one, so h2c is not served.) Per connection:
//! - `TCP_NODELAY`: an answer written in pieces (SSE events, headers then body) must not wait for
//!   the client's delayed ACK (Nagle): that cost ~40 ms per streamed call.
//! - **Header-read and idle keep-alive timeouts**, both from hyper's header-read timer. hyper
//!   arms that one timer whenever the connection waits for a request head — at accept, and again
//!   as soon as an answer is sent on a keep-alive connection — and closes the connection if no
//!   complete head arrived by then; it is not armed while a request runs or an answer streams, so
//!   neither timeout can cut a long SSE answer. hyper has one duration for both waits;
//!   [`WaitTimer`], the connection's `hyper::rt::Timer`, tells them apart: the first wait gets
//!   `SERVER_HEADER_READ_TIMEOUT` (a slow-header client is gone within seconds), later ones
//!   `SERVER_KEEPALIVE_TIMEOUT` (idle clients keep their connection as long as a load balancer
//!   expects). A client therefore holds a connection without a complete request for at most the
//!   larger of the two.
//! - The **body deadline** and the **concurrency cap** are per request: see
//!   [`crate::http::admission`].
//! - **Per-IP connection limit** (`SERVER_MAX_CONNECTIONS_PER_IP`, off by default): a connection
//!   over it is closed as soon as it is accepted, before a byte is read.
//!
//! **Graceful stop**: when `stop` fires the listener is closed and every connection is told to
//! finish (hyper's `graceful_shutdown`): an idle keep-alive connection closes at once, one with
//! an answer in flight closes after it. The caller ([`crate::app`]) bounds the wait and aborts
//! the task, which aborts every connection still open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::state::AppState;

/// What each connection is allowed.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections_per_ip: Option<usize>,
}

impl Limits {
    pub fn from_config(server: &poolgate_shared::config::ServerSettings) -> Limits {
        Limits {
            header_read_timeout: server.header_read_timeout,
            keepalive_timeout: server.keepalive_timeout,
            max_connections_per_ip: server.max_connections_per_ip,
        }
    }
}

/// Serves `router` on `listener` until `stop` completes, then lets the connections finish.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    state: AppState,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let per_ip = limits.max_connections_per_ip.map(PerIp::new);
    let (finish, finishing) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        // Out of file descriptors and the like: wait for connections to close
                        // rather than spin on the error.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let ip_slot = match &per_ip {
                    None => None,
                    Some(table) => match table.enter(peer.ip()) {
                        Some(slot) => Some(slot),
                        None => {
                            state.metrics.connections_refused.with_label_values(&["per_ip_limit"]).inc();
                            tracing::debug!(peer = %peer.ip(), "connection over the per-IP limit closed");
                            continue;
                        }
                    },
                };
                connections.spawn(connection(
                    tcp,
                    router.clone(),
                    limits,
                    state.clone(),
                    finishing.clone(),
                    ip_slot,
                ));
            }
        }
    }
    drop(listener);
    let _ = finish.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// How long the loop waits after an accept error that is not about one connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(500);

/// Errors that concern one connection only (as hyper-util and axum classify them).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// One connection, served until it closes or is told to finish.
async fn connection(
    tcp: TcpStream,
    router: axum::Router,
    limits: Limits,
    state: AppState,
    mut finishing: tokio::sync::watch::Receiver<bool>,
    _ip_slot: Option<IpSlot>,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    state.metrics.connections_open.inc();
    let timer = WaitTimer::new(limits.header_read_timeout, limits.keepalive_timeout);
    let waits = timer.waits.clone();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(timer)
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = async { let _ = finishing.wait_for(|f| *f).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    state.metrics.connections_open.dec();
    match served {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            // Which wait ran out: the first request head, or the next one on a kept-alive
            // connection.
            let phase = if waits.load(Ordering::SeqCst) <= 1 {
                "header"
            } else {
                "idle"
            };
            state.metrics.connection_timeouts.with_label_values(&[phase]).inc();
            tracing::debug!(phase, "connection closed: request head not received in time");
        }
        Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
    }
}

/// The connection's timer for hyper. hyper's HTTP/1 server uses its timer only for the
/// header-read wait (hyper 1.x `proto/h1/conn.rs`, `poll_read_head`), making a fresh sleep each
/// time the connection waits for a request head, due `header_read_timeout` from then. The first
/// such wait keeps that deadline; later ones (between requests on a kept-alive connection) are
/// moved to `keepalive` from the same start. `node/tests/api/connections.rs` pins both
/// behaviours, so a hyper that changed this would fail there.
#[derive(Clone)]
struct WaitTimer {
    inner: TokioTimer,
    header: Duration,
    keepalive: Duration,
    /// Waits for a request head begun on this connection.
    waits: Arc<AtomicUsize>,
}

impl WaitTimer {
    fn new(header: Duration, keepalive: Duration) -> WaitTimer {
        WaitTimer {
            inner: TokioTimer::new(),
            header,
            keepalive,
            waits: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// hyper's deadline (`start + header`) for this wait, moved to `start + keepalive` unless it
    /// is the connection's first.
    fn deadline_for(&self, deadline: Instant) -> Instant {
        if self.waits.fetch_add(1, Ordering::SeqCst) == 0 {
            return deadline;
        }
        deadline
            .checked_sub(self.header)
            .map_or(deadline, |start| start + self.keepalive)
    }
}

impl Timer for WaitTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.inner.sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.inner.sleep_until(self.deadline_for(deadline))
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        self.inner.reset(sleep, self.deadline_for(new_deadline));
    }
}

/// Open connections per client address, when `SERVER_MAX_CONNECTIONS_PER_IP` is set.
struct PerIp {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted connection; dropping it (the connection ended) frees its place.
struct IpSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(limit: usize) -> PerIp {
        PerIp {
            limit,
            open: Arc::default(),
        }
    }

    fn enter(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // The table holds only addresses with a connection open.
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_counts_each_address_and_frees_on_drop() {
        let table = PerIp::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = table.enter(a).expect("1st");
        let _second = table.enter(a).expect("2nd");
        assert!(table.enter(a).is_none(), "3rd from one address");
        assert!(table.enter(b).is_some(), "another address has its own count");
        drop(first);
        assert!(table.enter(a).is_some(), "a closed connection frees its place");
    }

    #[test]
    fn the_first_wait_gets_the_header_timeout_later_ones_the_keepalive() {
        let timer = WaitTimer::new(Duration::from_secs(10), Duration::from_secs(75));
        let start = Instant::now();
        assert_eq!(
            timer.deadline_for(start + Duration::from_secs(10)),
            start + Duration::from_secs(10)
        );
        assert_eq!(
            timer.deadline_for(start + Duration::from_secs(10)),
            start + Duration::from_secs(75)
        );
        assert_eq!(
            timer.deadline_for(start + Duration::from_secs(10)),
            start + Duration::from_secs(75)
        );
    }
}
