//! Process shutdown: a future that completes on SIGTERM (Kubernetes) or Ctrl-C, and
//! [`Tracker`], which counts work in flight (requests until their body is sent, lease releases
//! until the control plane confirmed them) so that a stopping process waits on an event, not a
//! timer.

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

    /// Enters unless `limit` things are already in flight (a node's cap on concurrent requests):
    /// one atomic step, so concurrent callers never take the count past the limit.
    pub fn try_enter(self: &Arc<Self>, limit: usize) -> Option<Guard> {
        self.count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| Guard(self.clone()))
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

/// Completes when the process is asked to stop. If a signal handler cannot be installed the
/// future never completes for that signal (the other still works), rather than stopping at once.
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("interrupt received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
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

    #[test]
    fn try_enter_stops_at_the_limit_and_frees_a_place_on_drop() {
        let t = Arc::new(Tracker::default());
        let a = t.try_enter(2).expect("first");
        let _b = t.try_enter(2).expect("second");
        assert!(t.try_enter(2).is_none(), "third is over the limit");
        assert_eq!(t.in_flight(), 2, "a refusal counts nothing");
        drop(a);
        assert!(t.try_enter(2).is_some());
    }

    #[tokio::test]
    async fn gives_up_after_the_limit() {
        let t = Arc::new(Tracker::default());
        let _held = t.enter();
        assert_eq!(t.wait_idle(Duration::from_millis(30)).await, 1);
    }
}
