//! The session history pass (every `POOL_MANAGER_CLEANUP_INTERVAL`, after the snapshots, leader
//! only): `mcp_sessions` records every upstream session the pools hold — pool, endpoint (with
//! credentials redacted), protocol version, status, reuse count, created, closed and why — for
//! operators and the optimizer. Per pool, the slots the control plane holds now are upserted in
//! batches and the pool's open rows whose slot has left are closed with reason `gone` (`server
//! deleted` when the server is gone); then rows closed longer ago than
//! `POOL_MANAGER_METRICS_RETENTION_DAYS` (the metrics' retention) are deleted.
//!
//! Why a pass and not a write per slot change: a slot is created, leased and removed on the MCP
//! request path, and the database must never be there (nodes stay up and fast while it is slow
//! or down). The control plane is the truth for live sessions; this pass copies it into the
//! database a pool at a time, one transaction per pool. A session that lives and dies between two
//! passes leaves no row; times are the control plane's creation time and the pass that saw the
//! slot gone (closed_at is accurate to one interval). The slot record carries no per-session
//! health-check time, so `last_health_check` is written only by whoever knows it (an unknown
//! value keeps the stored one).

use std::time::Duration;

use chrono::{DateTime, Utc};
use poolgate_control::{Pools, SlotRecord, SlotState};
use poolgate_shared::config::redact_credentials;
use poolgate_shared::domain::server::{Server, ServerId};
use poolgate_store::SessionRow;

use super::each_pool;
use super::leader::Leadership;

/// Close reason of a row whose slot left the pool (retired, recycled, reclaimed, unhealthy…).
pub const GONE: &str = "gone";
/// Close reason of the rows of a deleted server.
pub const SERVER_DELETED: &str = "server deleted";

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryReport {
    /// Pools recorded.
    pub pools: usize,
    /// Open rows inserted or updated.
    pub recorded: u64,
    /// Rows closed.
    pub closed: u64,
    /// Closed rows deleted by retention.
    pub deleted: u64,
}

#[derive(Clone)]
pub struct History {
    pub pools: Pools,
    pub leadership: Leadership,
    /// `POOL_MANAGER_METRICS_RETENTION_DAYS`: closed rows older than this are deleted.
    pub retention_days: u64,
    /// The most one pool's share of a pass may take ([`crate::pool_deadline`]).
    pub deadline: Duration,
}

/// The history status of a slot state; `None` for a slot already removed.
pub fn status(state: SlotState) -> Option<&'static str> {
    match state {
        SlotState::Ready => Some("healthy"),
        SlotState::Unhealthy => Some("unhealthy"),
        SlotState::Draining => Some("draining"),
        SlotState::Retired => Some("retiring"),
        SlotState::Closed => None,
    }
}

/// A slot as a history row (pure, for tests); `None` for a slot already removed.
pub fn row(slot: &SlotRecord, server: &Server, now: DateTime<Utc>) -> Option<SessionRow> {
    let status = status(slot.state)?;
    let endpoint = slot
        .meta
        .endpoint
        .as_deref()
        .or_else(|| server.endpoints.get(slot.endpoint as usize).map(|e| e.url.as_str()))
        .map(redact_credentials)
        .unwrap_or_default();
    Some(SessionRow {
        id: slot.id.clone(),
        endpoint_url: endpoint,
        protocol_version: slot.meta.protocol_version.clone(),
        status: status.to_owned(),
        reuse_count: i64::try_from(slot.reuse_count).unwrap_or(i64::MAX),
        created_at: DateTime::from_timestamp_millis(slot.created_ms).unwrap_or(now),
        last_health_check: None,
    })
}

impl History {
    /// One pass, if this process leads (pools concurrently, see [`each_pool`]), then retention.
    pub async fn tick(&self) -> HistoryReport {
        let mut report = HistoryReport::default();
        let Some(term) = self.leadership.term() else {
            return report;
        };
        let pools = match self.pools.control.pools().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "session history: cannot list pools");
                return report;
            }
        };
        for r in each_pool("session history", pools, self.deadline, |pool| self.pool(pool, term)).await {
            report.pools += r.pools;
            report.recorded += r.recorded;
            report.closed += r.closed;
        }
        let store = &self.pools.store;
        // A deleted server's pool may leave the control plane before a pass saw it.
        match store
            .close_sessions_of_deleted_servers(SERVER_DELETED, poolgate_shared::domain::now())
            .await
        {
            Ok(n) => report.closed += n,
            Err(e) => tracing::warn!(error = %e, "session history: deleted servers' rows not closed"),
        }
        let days = i64::try_from(self.retention_days).unwrap_or(i64::MAX / 86_400_000);
        let cutoff = poolgate_shared::domain::now() - chrono::Duration::days(days);
        match store.delete_closed_sessions_before(cutoff).await {
            Ok(n) => report.deleted = n,
            Err(e) => tracing::warn!(error = %e, "session history: retention failed"),
        }
        report
    }

    /// One pool's share: its slots now against its open rows.
    async fn pool(&self, pool: ServerId, term: u64) -> HistoryReport {
        let mut report = HistoryReport::default();
        if self.leadership.term() != Some(term) {
            return report;
        }
        let store = &self.pools.store;
        let server = match store.get_server(&pool).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%pool, error = %e, "session history: cannot read the server");
                return report;
            }
        };
        let now = poolgate_shared::domain::now();
        let written = match server {
            None => {
                store
                    .record_sessions(pool.as_str(), None, &[], SERVER_DELETED, now)
                    .await
            }
            Some(server) => {
                // A failed read must not look like an empty pool (that would close every row).
                let slots = match self.pools.control.slots(&pool).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%pool, error = %e, "session history: cannot read the slots");
                        return report;
                    }
                };
                let rows: Vec<SessionRow> = slots.iter().filter_map(|s| row(s, &server, now)).collect();
                let pool_id = store.pool_row(&pool).await.ok().flatten().map(|(id, _)| id);
                store
                    .record_sessions(pool.as_str(), pool_id.as_deref(), &rows, GONE, now)
                    .await
            }
        };
        match written {
            Ok(r) => {
                report.pools = 1;
                report.recorded = r.upserted;
                report.closed = r.closed;
            }
            Err(e) => tracing::warn!(%pool, error = %e, "session history not written"),
        }
        report
    }
}
