//! `admin_audit_log`: who changed what, the state before and after, and when. Rows are written by
//! the store methods that make the change, inside their transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row as _;

use super::{with_db, Store, StoreError};
use poolgate_shared::domain::server::{Server, ServerId};

/// Largest page of audit entries one call returns.
pub const MAX_AUDIT_PAGE: i64 = 1000;

/// A row about to be written. Server snapshots serialize with upstream header values redacted.
pub(super) struct AuditRecord {
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
        AuditRecord {
            at: Utc::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            server_id: server_id.map(|id| id.as_str().to_owned()),
            before: snap(before),
            after: snap(after),
        }
    }
}

/// Writes `record` on `conn` (a transaction of the caller's).
pub(super) async fn insert_audit<'c, DB, E>(conn: E, record: &AuditRecord) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO admin_audit_log (at, actor, action, server_id, before_json, after_json) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(record.at)
    .bind(record.actor.clone())
    .bind(record.action.clone())
    .bind(record.server_id.clone())
    .bind(record.before.clone())
    .bind(record.after.clone())
    .execute(conn)
    .await?;
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
