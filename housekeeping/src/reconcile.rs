//! The reconcile pass (every `POOL_MANAGER_RECONCILE_INTERVAL`, leader only): the database is the
//! truth for pool configuration, whatever changed it — the admin API, a write made while Redis
//! was away, direct SQL on the seed's pool columns. Each pass syncs every server's pool from the
//! database (one comparison per pool when nothing changed: the sync script compares a digest),
//! which also converges the pool itself (slots at removed endpoints or opened with old headers
//! leave, a disabled pool drains; see `control/src/lua/sync.lua`), closes the upstream sessions
//! of the slots that left, and removes the pools of deleted servers once they are empty (I14).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use poolgate_control::slots::SlotClient;
use poolgate_control::PoolSpec;
use poolgate_shared::domain::server::{Server, ServerId};

use super::each_pool;
use super::leader::Leadership;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Pools visited.
    pub pools: usize,
    /// Pools whose control-plane configuration differed from the database and was re-synced.
    pub synced: usize,
    /// Pools of deleted servers removed from the control plane.
    pub forgotten: usize,
}

#[derive(Clone)]
pub struct Reconcile {
    pub slots: SlotClient,
    pub leadership: Leadership,
    /// The most one pool's share of a pass may take ([`crate::pool_deadline`]).
    pub deadline: Duration,
}

impl Reconcile {
    pub async fn tick(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        if self.leadership.term().is_none() {
            return report;
        }
        let servers = match self.slots.pools().store.list_servers().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: cannot read the servers");
                return report;
            }
        };
        let registered = match self.slots.control().pools().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: cannot list the pools");
                return report;
            }
        };
        let live: Arc<HashMap<ServerId, Server>> = Arc::new(servers.into_iter().map(|s| (s.id.clone(), s)).collect());
        let mut ids: Vec<ServerId> = live.keys().cloned().collect();
        ids.extend(registered.into_iter().filter(|p| !live.contains_key(p)));
        ids.sort();
        let passes = each_pool("reconcile", ids, self.deadline, |id| {
            let live = Arc::clone(&live);
            async move { self.pool(&id, live.get(&id)).await }
        })
        .await;
        for r in passes {
            report.pools += 1;
            report.synced += usize::from(r.synced);
            report.forgotten += usize::from(r.forgotten);
        }
        report
    }

    async fn pool(&self, id: &ServerId, server: Option<&Server>) -> PoolPass {
        let mut pass = PoolPass::default();
        let spec = server.map_or_else(PoolSpec::tombstone, PoolSpec::for_server);
        match self.slots.converge(id, &spec, server).await {
            Ok(s) => pass.synced = s.changed,
            Err(e) => {
                tracing::warn!(pool = %id, error = %e, "reconcile: sync failed");
                return pass;
            }
        }
        if pass.synced {
            tracing::info!(pool = %id, deleted = server.is_none(), "reconcile: pool re-synced from the database");
        }
        if server.is_none() {
            pass.forgotten = self.slots.control().forget(id).await.unwrap_or(false);
        }
        pass
    }
}

#[derive(Default)]
struct PoolPass {
    synced: bool,
    forgotten: bool,
}
