//! Admission for leases that queue for any slot (shared isolation, sessionless upstreams): the
//! wait an admitted request may face is bounded by what the pool can serve, so under overload
//! the excess is refused at once (503 + `Retry-After`) and admitted requests keep a latency close
//! to the unloaded one — instead of every request waiting up to `pool_timeout`.
//!
//! Per pool and node:
//! - **Little's law**: with `waiting` requests queued here, `capacity` leases in the pool and a
//!   mean hold time `h` (EWMA of this node's measured leases), a newcomer expects to wait about
//!   `(waiting + 1) / capacity × h`. It is admitted while that is at most the target
//!   `max(h, MIN_TARGET)` — one hold time: its total stays near twice the unloaded time — and then
//!   waits at most `max(2 × target, MIN_WAIT)` (never past `pool_timeout`). Until a hold time was
//!   observed every request is admitted as before, so a cold pool and short bursts of fast calls
//!   (parallel session opens) are served.
//! - **FIFO, one waiter at a time**: queued requests take turns through a fair (FIFO) async
//!   mutex; only the head of the queue re-runs `acquire` when a release is announced, so one
//!   release wakes one waiter here rather than every waiter re-running the script. A newcomer
//!   tries at once only when nobody is queued (it cannot overtake the queue).
//!
//! The queue is node-local: across nodes the control plane's announcements still wake each
//! node's head, so the fleet behaves as one FIFO queue per node.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The smallest wait target: below it queueing costs less than a retry round trip.
pub const MIN_TARGET: Duration = Duration::from_millis(10);
/// The shortest wait an admitted request is given.
pub const MIN_WAIT: Duration = Duration::from_millis(20);

/// One pool's admission state on this node.
#[derive(Debug, Default)]
pub struct Admission {
    /// Turns for queued requests (tokio's mutex is fair: first come, first served).
    pub(super) turn: tokio::sync::Mutex<()>,
    waiting: AtomicU32,
    /// EWMA of measured lease hold times (µs); 0 until one was observed.
    hold_us: AtomicU64,
}

/// What admission decided for a request that found no free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Queue, waiting at most this long.
    Wait(Duration),
    /// Refuse at once: the expected wait (ms) is past the target.
    Refuse { expected_ms: u64 },
}

impl Admission {
    /// Records one lease's hold time (EWMA with weight 1/8).
    pub fn observe(&self, held: Duration) {
        let sample = held.as_micros().min(u128::from(u64::MAX / 2)) as u64;
        let _ = self.hold_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == 0 {
                sample.max(1)
            } else {
                (old * 7 + sample) / 8
            })
        });
    }

    /// Requests queued here now.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The decision for a newcomer, given the pool's lease capacity and `pool_timeout`.
    pub fn decide(&self, capacity: u32, pool_timeout: Duration) -> Decision {
        let hold_us = self.hold_us.load(Ordering::Relaxed);
        if hold_us == 0 {
            return Decision::Wait(pool_timeout);
        }
        let hold = Duration::from_micros(hold_us);
        let target = hold.max(MIN_TARGET);
        let expected = hold.mul_f64(f64::from(self.waiting() + 1) / f64::from(capacity.max(1)));
        if expected > target {
            return Decision::Refuse {
                expected_ms: expected.as_millis() as u64,
            };
        }
        Decision::Wait((target * 2).max(MIN_WAIT).min(pool_timeout))
    }

    /// Counts a request as queued until the returned guard drops.
    pub(super) fn enter(&self) -> Queued<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Queued(self)
    }
}

/// A request counted in [`Admission::waiting`].
pub(super) struct Queued<'a>(&'a Admission);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cold_pool_admits_up_to_the_pool_timeout() {
        let a = Admission::default();
        assert_eq!(
            a.decide(4, Duration::from_secs(30)),
            Decision::Wait(Duration::from_secs(30))
        );
    }

    #[test]
    fn the_queue_is_bounded_by_one_hold_time_of_expected_wait() {
        let a = Admission::default();
        a.observe(Duration::from_millis(20));
        let timeout = Duration::from_secs(30);
        // 4 leases of 20 ms: the 1st..4th queued wait at most one hold time; the 5th would not.
        let mut held = Vec::new();
        for _ in 0..4 {
            assert_eq!(a.decide(4, timeout), Decision::Wait(Duration::from_millis(40)));
            held.push(a.enter());
        }
        assert_eq!(a.decide(4, timeout), Decision::Refuse { expected_ms: 25 });
        held.pop();
        assert!(matches!(a.decide(4, timeout), Decision::Wait(_)));
        drop(held);
        assert_eq!(a.waiting(), 0);
    }

    #[test]
    fn fast_calls_queue_deep_and_waits_never_pass_the_pool_timeout() {
        let a = Admission::default();
        a.observe(Duration::from_millis(1));
        let held: Vec<_> = (0..30).map(|_| a.enter()).collect();
        // 31 queued on 4 leases of 1 ms expect ~8 ms: under the 10 ms floor.
        assert_eq!(a.decide(4, Duration::from_secs(30)), Decision::Wait(MIN_WAIT));
        assert_eq!(
            a.decide(4, Duration::from_millis(5)),
            Decision::Wait(Duration::from_millis(5))
        );
        drop(held);
    }
}
