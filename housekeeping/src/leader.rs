//! Leader election with fencing (SPEC §6).
//!
//! The holder key lives in the control plane with a TTL set by Redis (`REDIS_LEADER_TTL`); the
//! leader renews it every `REDIS_LEADER_HEARTBEAT_INTERVAL`. Its term — a counter that is never
//! deleted — is the fencing token every leader-only script checks. A leader stops acting once its
//! renew deadline has passed, measured on its own monotonic clock from the *send* time of its last
//! successful renew, so a paused or partitioned leader stops before the key can expire (TTL >
//! deadline > heartbeat, checked by `Config::validate`). A new leader writes its token to every
//! registered pool before acting, so a late write from the old one is refused there.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use poolgate_control::{Campaign, ControlError, ControlPlane};

/// Leadership timing.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub ttl: Duration,
    pub heartbeat: Duration,
    pub renew_deadline: Duration,
}

/// What this process currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Leader with fencing token `term`, allowed to act until `valid_until`.
    Leader {
        term: u64,
        valid_until: Instant,
    },
}

/// A campaigner: run [`Leadership::run`] in a task; ask [`Leadership::term`] before every
/// leader-only write.
#[derive(Clone)]
pub struct Leadership {
    control: ControlPlane,
    holder: String,
    timing: Timing,
    role: Arc<watch::Sender<Role>>,
}

impl Leadership {
    pub fn new(control: ControlPlane, holder: impl Into<String>, timing: Timing) -> Leadership {
        Leadership {
            control,
            holder: holder.into(),
            timing,
            role: Arc::new(watch::channel(Role::Follower).0),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The fencing token to act with, if this process leads right now.
    pub fn term(&self) -> Option<u64> {
        match *self.role.borrow() {
            Role::Leader { term, valid_until } if Instant::now() < valid_until => Some(term),
            _ => None,
        }
    }

    /// Watches the role (tests, `/ready` detail, metrics).
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Gives leadership up (a refused fenced write showed a newer leader) and resigns the
    /// leader key if it still holds it, so the next leader need not wait for its TTL.
    pub fn step_down(&self) {
        let previous = self.role.send_replace(Role::Follower);
        if let Role::Leader { term, .. } = previous {
            let (control, holder) = (self.control.clone(), self.holder.clone());
            tokio::spawn(async move {
                let _ = control.resign(&holder, term).await;
            });
        }
    }

    /// Campaigns and renews until `shutdown` completes, then resigns if leading.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.tick().await;
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.timing.heartbeat) => {}
            }
        }
        let role = *self.role.borrow();
        if let Role::Leader { term, .. } = role {
            let _ = self.control.resign(&self.holder, term).await;
        }
        self.role.send_replace(Role::Follower);
    }

    /// One heartbeat: renew when leading, campaign otherwise. Returns the term held afterwards.
    pub async fn tick(&self) -> Option<u64> {
        let current = *self.role.borrow();
        let sent = Instant::now();
        match current {
            Role::Leader { term, .. } => {
                match self.control.renew_leadership(&self.holder, term, self.timing.ttl).await {
                    Ok(true) => {
                        self.role.send_replace(Role::Leader {
                            term,
                            valid_until: sent + self.timing.renew_deadline,
                        });
                        Some(term)
                    }
                    Ok(false) => {
                        tracing::warn!(holder = %self.holder, term, "leadership lost");
                        self.role.send_replace(Role::Follower);
                        None
                    }
                    // Outcome unknown: keep acting only until the deadline of the last good renew.
                    Err(e) => {
                        tracing::warn!(holder = %self.holder, error = %e, "leadership renew failed");
                        self.term()
                    }
                }
            }
            Role::Follower => match self.control.campaign(&self.holder, self.timing.ttl).await {
                Ok(Campaign::Won { term }) => {
                    // Fence every pool before the first leader-only write. Mandatory: a leader
                    // that could not fence them all resigns and campaigns again next heartbeat,
                    // rather than act where an older leader's writes would still be accepted.
                    let fenced = match self.control.pools().await {
                        Ok(pools) => {
                            let mut all = true;
                            for pool in pools {
                                match self.control.fence(&pool, term).await {
                                    Ok(()) => {}
                                    Err(ControlError::StaleFence { newest }) => {
                                        // The term counter is behind a token already used: it lost
                                        // an increment (a failover). Raise it and campaign again.
                                        tracing::warn!(%pool, term, newest, "pool fenced by a newer term than the counter holds; re-seeding the term");
                                        if let Err(e) = self.control.seed_term(newest).await {
                                            tracing::warn!(error = %e, "re-seeding the term failed");
                                        }
                                        all = false;
                                    }
                                    Err(e) => {
                                        tracing::warn!(%pool, error = %e, "fencing a pool failed");
                                        all = false;
                                    }
                                }
                            }
                            all
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listing the pools to fence failed");
                            false
                        }
                    };
                    if !fenced {
                        let _ = self.control.resign(&self.holder, term).await;
                        return None;
                    }
                    tracing::info!(holder = %self.holder, term, "became leader");
                    self.role.send_replace(Role::Leader {
                        term,
                        valid_until: sent + self.timing.renew_deadline,
                    });
                    Some(term)
                }
                Ok(Campaign::Held { .. }) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "campaign failed");
                    None
                }
            },
        }
    }
}
