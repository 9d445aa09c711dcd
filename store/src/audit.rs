//! `admin_audit_log`: who changed what, the state before and after, and when. Rows are written by
//! the store methods that make the change, inside their transaction; once it committed, the same
//! record goes to the audit file when one is configured ([`crate::AuditFile`], one JSON line per
//! row: [`AuditRecord::line`]).

use chrono::{DateTime, SubsecRound as _, Utc};
use serde::Serialize;
use sqlx::Row as _;

use super::{with_db, Store, StoreError};
use poolgate_shared::domain::server::{Server, ServerId};

/// Largest page of audit entries one call returns.
pub const MAX_AUDIT_PAGE: i64 = 1000;

/// A row about to be written. Server snapshots serialize with upstream header values redacted.
pub(super) struct AuditRecord {
    /// The row's id, once [`insert_audit`] wrote it.
    id: Option<i64>,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    server_id: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

impl AuditRecord {
    pub(super) fn new(
        actor: &str,
        action: &str,
        server_id: Option<&ServerId>,
        before: Option<&Server>,
        after: Option<&Server>,
    ) -> Self {
        // Serializing a Server (strings, numbers, redacted headers) cannot fail.
        let snap = |s: Option<&Server>| s.and_then(|s| serde_json::to_string(s).ok());
        Self::raw(actor, action, server_id, snap(before), snap(after))
    }

    /// A record of an operation that is not a row change (pool drain, reset): `before` and
    /// `after` are what the caller describes, e.g. the pool's figures.
    pub(super) fn with_values(
        actor: &str,
        action: &str,
        server_id: Option<&ServerId>,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) -> Self {
        let text = |v: Option<&serde_json::Value>| v.map(serde_json::Value::to_string);
        Self::raw(actor, action, server_id, text(before), text(after))
    }

    fn raw(
        actor: &str,
        action: &str,
        server_id: Option<&ServerId>,
        before: Option<String>,
        after: Option<String>,
    ) -> Self {
        AuditRecord {
            id: None,
            // PostgreSQL keeps microseconds: the time written to the file is the time read back.
            at: Utc::now().trunc_subsecs(6),
            actor: actor.to_owned(),
            action: action.to_owned(),
            server_id: server_id.map(|id| id.as_str().to_owned()),
            before,
            after,
        }
    }

    /// The audit file's line for this row: the JSON object `GET /api/audit` shows for it
    /// ([`AuditEntry`]: `id`, `at`, `actor`, `action`, `server_id`, `before`, `after`), with
    /// `before`/`after` the very JSON text stored in `before_json`/`after_json`. No newline inside.
    pub(super) fn line(&self) -> String {
        // Serializing strings, numbers and a time cannot fail.
        fn json<T: Serialize>(v: &T) -> String {
            serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
        }
        format!(
            "{{\"id\":{},\"at\":{},\"actor\":{},\"action\":{},\"server_id\":{},\"before\":{},\"after\":{}}}",
            json(&self.id),
            json(&self.at),
            json(&self.actor),
            json(&self.action),
            json(&self.server_id),
            self.before.as_deref().unwrap_or("null"),
            self.after.as_deref().unwrap_or("null"),
        )
    }
}

/// Writes `record` on `conn` (a transaction of the caller's) and notes the row's id in it.
pub(super) async fn insert_audit<'c, DB, E>(conn: E, record: &mut AuditRecord) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
{
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO admin_audit_log (at, actor, action, server_id, before_json, after_json) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(record.at)
    .bind(record.actor.clone())
    .bind(record.action.clone())
    .bind(record.server_id.clone())
    .bind(record.before.clone())
    .bind(record.after.clone())
    .fetch_one(conn)
    .await?;
    record.id = Some(id);
    Ok(())
}

/// One audit entry as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub server_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl Store {
    /// After a commit: the committed rows go to the audit file, if there is one (never blocks).
    pub(super) fn audit_committed(&self, records: &[AuditRecord]) {
        if let Some(file) = &self.audit_file {
            for r in records {
                file.append(r.line());
            }
        }
    }

    /// Audits an admin operation that changes no row of the store (a pool drain or reset acts on
    /// the control plane): one row in its own transaction, then the audit file.
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        server_id: Option<&ServerId>,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let mut audit = AuditRecord::with_values(actor, action, server_id, before, after);
        with_db!(self, |pool, d| {
            let mut tx = super::begin_write(pool, d).await?;
            insert_audit(&mut *tx, &mut audit).await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.audit_committed(&[audit]);
        Ok(())
    }

    /// Newest first, optionally for one server; at most `limit` (capped at [`MAX_AUDIT_PAGE`]).
    pub async fn list_audit(&self, server_id: Option<&ServerId>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        let sql = "SELECT id, at, actor, action, server_id, before_json, after_json FROM admin_audit_log \
                   WHERE ($1 IS NULL OR server_id = $1) ORDER BY id DESC LIMIT $2";
        let parse = |raw: Option<String>| -> Result<Option<serde_json::Value>, StoreError> {
            raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(format!("audit row: {e}"))))
                .transpose()
        };
        with_db!(self, |pool, _d| {
            let rows = sqlx::query(sql)
                .bind(server_id.map(|s| s.as_str().to_owned()))
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(AuditEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    server_id: row.try_get("server_id")?,
                    before: parse(row.try_get("before_json")?)?,
                    after: parse(row.try_get("after_json")?)?,
                });
            }
            Ok(out)
        })
    }
}
