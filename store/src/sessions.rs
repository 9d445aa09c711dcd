//! `mcp_sessions`: the history of upstream sessions (one row per slot), written by the leader's
//! history pass in batches, never on the request path; retention deletes closed rows.
//!
//! A row is open while `closed_at` is null. [`Store::record_sessions`] brings a server's rows in
//! line with the sessions its pool holds now: listed sessions are upserted, open rows no longer
//! listed are closed. Closing is final: a closed row is never reopened or updated by an upsert.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{begin_write, with_db, Store, StoreError};

/// Rows per multi-row statement (9 parameters each: far below both databases' limits).
const BATCH: usize = 500;

/// The status a row gets when it is closed.
const CLOSED: &str = "closed";

/// What the caller knows of one open upstream session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// The slot id (unique across pools).
    pub id: String,
    pub endpoint_url: String,
    pub protocol_version: Option<String>,
    /// `healthy`, `unhealthy`, `draining`, `retiring`.
    pub status: String,
    pub reuse_count: i64,
    pub created_at: DateTime<Utc>,
    /// Unknown (`None`) keeps the stored value.
    pub last_health_check: Option<DateTime<Utc>>,
}

/// One stored row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoredSession {
    pub id: String,
    pub server_id: String,
    pub pool_id: Option<String>,
    pub endpoint_url: String,
    pub protocol_version: Option<String>,
    pub status: String,
    pub reuse_count: i64,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub last_health_check: Option<DateTime<Utc>>,
    pub close_reason: Option<String>,
}

/// What [`Store::record_sessions`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Open rows inserted or updated.
    pub upserted: u64,
    /// Open rows closed because their session was not listed.
    pub closed: u64,
}

impl Store {
    /// In one transaction: upserts every session in `open` as an open row of `server_id` (a row
    /// already closed stays closed; a row of another server with the same id is left alone), and
    /// closes every open row of `server_id` not in `open` with `closed_at = now` and
    /// `close_reason` (an empty `open` closes them all, e.g. "server deleted").
    pub async fn record_sessions(
        &self,
        server_id: &str,
        pool_id: Option<&str>,
        open: &[SessionRow],
        close_reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        let mut done = Recorded::default();
        with_db!(self, |pool, d| {
            let mut tx = begin_write(pool, d).await?;
            let stored: Vec<String> =
                sqlx::query("SELECT id FROM mcp_sessions WHERE server_id = $1 AND closed_at IS NULL")
                    .bind(server_id)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get("id"))
                    .collect::<Result<_, _>>()?;
            // One row per id: a multi-row upsert may not touch a row twice (PostgreSQL).
            let mut listed = std::collections::HashSet::new();
            let open: Vec<&SessionRow> = open.iter().filter(|s| listed.insert(s.id.as_str())).collect();
            let gone: Vec<&str> = stored
                .iter()
                .map(String::as_str)
                .filter(|id| !listed.contains(id))
                .collect();
            for chunk in open.chunks(BATCH) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO mcp_sessions (id, server_id, pool_id, endpoint_url, protocol_version, status, \
                     reuse_count, created_at, last_health_check) ",
                );
                q.push_values(chunk, |mut b, s| {
                    b.push_bind(s.id.as_str())
                        .push_bind(server_id)
                        .push_bind(pool_id)
                        .push_bind(s.endpoint_url.as_str())
                        .push_bind(s.protocol_version.as_deref())
                        .push_bind(s.status.as_str())
                        .push_bind(s.reuse_count)
                        .push_bind(s.created_at)
                        .push_bind(s.last_health_check);
                });
                q.push(
                    " ON CONFLICT (id) DO UPDATE SET pool_id = COALESCE(excluded.pool_id, mcp_sessions.pool_id), \
                     endpoint_url = excluded.endpoint_url, protocol_version = excluded.protocol_version, \
                     status = excluded.status, reuse_count = excluded.reuse_count, \
                     last_health_check = COALESCE(excluded.last_health_check, mcp_sessions.last_health_check) \
                     WHERE mcp_sessions.server_id = excluded.server_id AND mcp_sessions.closed_at IS NULL",
                );
                done.upserted += q.build().execute(&mut *tx).await?.rows_affected();
            }
            for chunk in gone.chunks(BATCH) {
                let mut q = sqlx::QueryBuilder::new("UPDATE mcp_sessions SET closed_at = ");
                q.push_bind(now)
                    .push(", close_reason = ")
                    .push_bind(close_reason)
                    .push(", status = ")
                    .push_bind(CLOSED)
                    .push(" WHERE server_id = ")
                    .push_bind(server_id)
                    .push(" AND closed_at IS NULL AND id IN (");
                let mut ids = q.separated(", ");
                for id in chunk {
                    ids.push_bind(*id);
                }
                q.push(")");
                done.closed += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(done)
        })
    }

    /// Closes one open row; `false` if there is none (unknown or already closed).
    pub async fn close_session(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        with_db!(self, |pool, _d| {
            let done = sqlx::query(
                "UPDATE mcp_sessions SET closed_at = $2, close_reason = $3, status = $4 \
                 WHERE id = $1 AND closed_at IS NULL",
            )
            .bind(id)
            .bind(now)
            .bind(reason)
            .bind(CLOSED)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Closes every open row whose server no longer exists (its pool may be gone from the control
    /// plane before a pass saw it empty); returns how many.
    pub async fn close_sessions_of_deleted_servers(&self, reason: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        with_db!(self, |pool, _d| {
            let done = sqlx::query(
                "UPDATE mcp_sessions SET closed_at = $1, close_reason = $2, status = $3 \
                 WHERE closed_at IS NULL AND server_id NOT IN (SELECT id FROM servers)",
            )
            .bind(now)
            .bind(reason)
            .bind(CLOSED)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Retention: deletes rows closed before `cutoff` (open rows are kept whatever their age);
    /// returns how many.
    pub async fn delete_closed_sessions_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        with_db!(self, |pool, _d| {
            let done = sqlx::query("DELETE FROM mcp_sessions WHERE closed_at IS NOT NULL AND closed_at < $1")
                .bind(cutoff)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// A server's rows, newest first (by creation).
    pub async fn list_sessions(&self, server_id: &str, limit: i64) -> Result<Vec<StoredSession>, StoreError> {
        with_db!(self, |pool, _d| {
            let rows = sqlx::query(
                "SELECT id, server_id, pool_id, endpoint_url, protocol_version, status, reuse_count, created_at, \
                 closed_at, last_health_check, close_reason FROM mcp_sessions WHERE server_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(server_id)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(StoredSession {
                    id: r.try_get("id")?,
                    server_id: r.try_get("server_id")?,
                    pool_id: r.try_get("pool_id")?,
                    endpoint_url: r.try_get("endpoint_url")?,
                    protocol_version: r.try_get("protocol_version")?,
                    status: r.try_get("status")?,
                    reuse_count: r.try_get("reuse_count")?,
                    created_at: r.try_get("created_at")?,
                    closed_at: r.try_get("closed_at")?,
                    last_health_check: r.try_get("last_health_check")?,
                    close_reason: r.try_get("close_reason")?,
                });
            }
            Ok(out)
        })
    }
}
