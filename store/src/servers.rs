//! `servers` (with their pool columns) and `session_pools`. Every change writes its audit row in
//! the same transaction, so a change and its record land together or not at all.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::audit::{insert_audit, AuditRecord};
use super::{begin_write, is_unique_violation, with_db, Store, StoreError};
use poolgate_shared::domain::pool::{FieldError, PoolConfig, Quota};
use poolgate_shared::domain::server::{Endpoint, Server, ServerId, UpstreamHeaders};

const COLUMNS: &str = "id, name, endpoints, upstream_headers, created_at, updated_at, pool_enabled, \
    pool_strategy, pool_min_size, pool_max_size, pool_timeout, pool_recycle_seconds, pool_pre_ping, \
    pool_isolation, pool_session_capacity, pool_lease_ttl, pool_idle_ttl, pool_auto_optimize, pool_defaults, \
    pool_max_sessions_per_user, pool_max_inflight_per_user, pool_unused_ttl, pool_rate_limit, pool_rate_burst";

const INSERT: &str = "INSERT INTO servers (id, name, endpoints, upstream_headers, created_at, updated_at, \
    pool_enabled, pool_strategy, pool_min_size, pool_max_size, pool_timeout, pool_recycle_seconds, \
    pool_pre_ping, pool_isolation, pool_session_capacity, pool_lease_ttl, pool_idle_ttl, pool_auto_optimize, \
    pool_defaults, pool_max_sessions_per_user, pool_max_inflight_per_user, pool_unused_ttl, pool_rate_limit, \
    pool_rate_burst) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
    $20, $21, $22, $23, $24)";

const UPDATE: &str = "UPDATE servers SET name = $2, endpoints = $3, upstream_headers = $4, created_at = $5, \
    updated_at = $6, pool_enabled = $7, pool_strategy = $8, pool_min_size = $9, pool_max_size = $10, \
    pool_timeout = $11, pool_recycle_seconds = $12, pool_pre_ping = $13, pool_isolation = $14, \
    pool_session_capacity = $15, pool_lease_ttl = $16, pool_idle_ttl = $17, pool_auto_optimize = $18, \
    pool_defaults = $19, pool_max_sessions_per_user = $20, pool_max_inflight_per_user = $21, \
    pool_unused_ttl = $22, pool_rate_limit = $23, pool_rate_burst = $24 WHERE id = $1";

const INSERT_POOL: &str =
    "INSERT INTO session_pools (id, server_id, strategy, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)";
const UPDATE_POOL: &str = "UPDATE session_pools SET strategy = $2, status = $3, updated_at = $4 WHERE server_id = $1";

/// A `servers` row in the types both dialects bind and decode.
struct ServerRow {
    id: String,
    name: String,
    endpoints: String,
    upstream_headers: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    pool_enabled: bool,
    pool_strategy: String,
    pool_min_size: i32,
    pool_max_size: i32,
    pool_timeout: i32,
    pool_recycle_seconds: i32,
    pool_pre_ping: bool,
    pool_isolation: String,
    pool_session_capacity: i32,
    pool_lease_ttl: i32,
    pool_idle_ttl: i32,
    pool_auto_optimize: bool,
    /// `field=value,…`: the fields following `POOL_DEFAULT_*`, with the value written for each.
    pool_defaults: String,
    /// Quotas: -1 = `auto`.
    pool_max_sessions_per_user: i32,
    pool_max_inflight_per_user: i32,
    pool_unused_ttl: i32,
    pool_rate_limit: i32,
    pool_rate_burst: i32,
}

/// Decodes a row selected with [`COLUMNS`] (a macro: the row type differs per backend).
macro_rules! server_row {
    ($row:expr, $defaults:expr) => {{
        let row = $row;
        ServerRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            endpoints: row.try_get("endpoints")?,
            upstream_headers: row.try_get("upstream_headers")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            pool_enabled: row.try_get("pool_enabled")?,
            pool_strategy: row.try_get("pool_strategy")?,
            pool_min_size: row.try_get("pool_min_size")?,
            pool_max_size: row.try_get("pool_max_size")?,
            pool_timeout: row.try_get("pool_timeout")?,
            pool_recycle_seconds: row.try_get("pool_recycle_seconds")?,
            pool_pre_ping: row.try_get("pool_pre_ping")?,
            pool_isolation: row.try_get("pool_isolation")?,
            pool_session_capacity: row.try_get("pool_session_capacity")?,
            pool_lease_ttl: row.try_get("pool_lease_ttl")?,
            pool_idle_ttl: row.try_get("pool_idle_ttl")?,
            pool_auto_optimize: row.try_get("pool_auto_optimize")?,
            pool_defaults: row.try_get("pool_defaults")?,
            pool_max_sessions_per_user: row.try_get("pool_max_sessions_per_user")?,
            pool_max_inflight_per_user: row.try_get("pool_max_inflight_per_user")?,
            pool_unused_ttl: row.try_get("pool_unused_ttl")?,
            pool_rate_limit: row.try_get("pool_rate_limit")?,
            pool_rate_burst: row.try_get("pool_rate_burst")?,
        }
        .into_server($defaults)?
    }};
}

/// Binds a [`ServerRow`] to [`INSERT`] or [`UPDATE`] (same parameter order).
macro_rules! bind_server {
    ($query:expr, $r:expr) => {{
        let r = $r;
        $query
            .bind(r.id)
            .bind(r.name)
            .bind(r.endpoints)
            .bind(r.upstream_headers)
            .bind(r.created_at)
            .bind(r.updated_at)
            .bind(r.pool_enabled)
            .bind(r.pool_strategy)
            .bind(r.pool_min_size)
            .bind(r.pool_max_size)
            .bind(r.pool_timeout)
            .bind(r.pool_recycle_seconds)
            .bind(r.pool_pre_ping)
            .bind(r.pool_isolation)
            .bind(r.pool_session_capacity)
            .bind(r.pool_lease_ttl)
            .bind(r.pool_idle_ttl)
            .bind(r.pool_auto_optimize)
            .bind(r.pool_defaults)
            .bind(r.pool_max_sessions_per_user)
            .bind(r.pool_max_inflight_per_user)
            .bind(r.pool_unused_ttl)
            .bind(r.pool_rate_limit)
            .bind(r.pool_rate_burst)
    }};
}

fn corrupt(id: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("server {id}: {what}"))
}

impl ServerRow {
    fn from_server(s: &Server) -> Result<ServerRow, StoreError> {
        let json = |v: Result<String, serde_json::Error>| v.map_err(|e| corrupt(s.id.as_str(), e));
        let p = &s.pool;
        // Validated pool values are far below i32::MAX (see domain::pool's MAX_* bounds).
        let int = |v: u32| i32::try_from(v).map_err(|_| corrupt(s.id.as_str(), "pool value out of range"));
        let quota = |q: Quota| i32::try_from(q.stored()).map_err(|_| corrupt(s.id.as_str(), "pool quota out of range"));
        Ok(ServerRow {
            id: s.id.as_str().to_owned(),
            name: s.name.clone(),
            endpoints: json(serde_json::to_string(&s.endpoints))?,
            upstream_headers: json(serde_json::to_string(s.upstream_headers.expose()))?,
            created_at: s.created_at,
            updated_at: s.updated_at,
            pool_enabled: p.pool_enabled,
            pool_strategy: p.pool_strategy.as_str().to_owned(),
            pool_min_size: int(p.pool_min_size)?,
            pool_max_size: int(p.pool_max_size)?,
            pool_timeout: int(p.pool_timeout)?,
            pool_recycle_seconds: int(p.pool_recycle_seconds)?,
            pool_pre_ping: p.pool_pre_ping,
            pool_isolation: p.pool_isolation.as_str().to_owned(),
            pool_session_capacity: int(p.pool_session_capacity)?,
            pool_lease_ttl: int(p.pool_lease_ttl)?,
            pool_idle_ttl: int(p.pool_idle_ttl)?,
            pool_auto_optimize: p.pool_auto_optimize,
            pool_defaults: s
                .pool_defaults
                .iter()
                .filter_map(|f| p.field_text(f).map(|v| format!("{f}={v}")))
                .collect::<Vec<_>>()
                .join(","),
            pool_max_sessions_per_user: quota(p.pool_max_sessions_per_user)?,
            pool_max_inflight_per_user: quota(p.pool_max_inflight_per_user)?,
            pool_unused_ttl: int(p.pool_unused_ttl)?,
            pool_rate_limit: int(p.pool_rate_limit)?,
            pool_rate_burst: int(p.pool_rate_burst)?,
        })
    }

    fn into_server(self, defaults: Option<&PoolConfig>) -> Result<Server, StoreError> {
        let id = ServerId::parse(&self.id).map_err(|e| corrupt(&self.id, e))?;
        let endpoints: Vec<Endpoint> = serde_json::from_str(&self.endpoints).map_err(|e| corrupt(&self.id, e))?;
        let headers: BTreeMap<String, String> =
            serde_json::from_str(&self.upstream_headers).map_err(|e| corrupt(&self.id, e))?;
        let uint = |v: i32| u32::try_from(v).map_err(|_| corrupt(&self.id, format!("negative pool value {v}")));
        // Re-validate through the one validation path: a hand-edited row that breaks a rule is
        // reported, not served.
        let pool = PoolConfig {
            pool_enabled: self.pool_enabled,
            pool_strategy: self.pool_strategy.parse().map_err(|e| corrupt(&self.id, e))?,
            pool_min_size: uint(self.pool_min_size)?,
            pool_max_size: uint(self.pool_max_size)?,
            pool_timeout: uint(self.pool_timeout)?,
            pool_recycle_seconds: uint(self.pool_recycle_seconds)?,
            pool_pre_ping: self.pool_pre_ping,
            pool_isolation: self.pool_isolation.parse().map_err(|e| corrupt(&self.id, e))?,
            pool_session_capacity: uint(self.pool_session_capacity)?,
            pool_lease_ttl: uint(self.pool_lease_ttl)?,
            pool_idle_ttl: uint(self.pool_idle_ttl)?,
            pool_auto_optimize: self.pool_auto_optimize,
            pool_max_sessions_per_user: Quota::from_stored(self.pool_max_sessions_per_user.into()),
            pool_max_inflight_per_user: Quota::from_stored(self.pool_max_inflight_per_user.into()),
            pool_unused_ttl: uint(self.pool_unused_ttl)?,
            pool_rate_limit: uint(self.pool_rate_limit)?,
            pool_rate_burst: uint(self.pool_rate_burst)?,
        };
        let pool = PoolConfig::default()
            .apply(&pool.to_patch())
            .map_err(|e: FieldError| corrupt(&self.id, e))?;
        // A field still holding the value written when it followed the default follows it still;
        // one changed since (directly in SQL) is explicit.
        let pool_defaults = self
            .pool_defaults
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(f, written)| pool.field_text(f).as_deref() == Some(*written))
            .map(|(f, _)| f.to_owned())
            .collect();
        let mut server = Server {
            id,
            name: self.name,
            endpoints,
            upstream_headers: UpstreamHeaders::from_stored(headers),
            pool,
            pool_defaults,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        if let Some(d) = defaults {
            server.follow_defaults(d);
        }
        Ok(server)
    }
}

fn pool_status(pool: &PoolConfig) -> &'static str {
    if pool.pool_enabled {
        "active"
    } else {
        "disabled"
    }
}

/// Outcome of a read-modify-write that the caller's closure may refuse.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error("server not found")]
    NotFound,
    #[error("refused")]
    Rejected(E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Outcome of a bulk update: nothing is changed unless every server passes.
#[derive(Debug, thiserror::Error)]
pub enum BulkError<E> {
    #[error("server {0} not found")]
    NotFound(ServerId),
    #[error("server {0} refused the change")]
    Rejected(ServerId, E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> From<sqlx::Error> for UpdateError<E> {
    fn from(e: sqlx::Error) -> Self {
        UpdateError::Store(e.into())
    }
}

impl<E> From<sqlx::Error> for BulkError<E> {
    fn from(e: sqlx::Error) -> Self {
        BulkError::Store(e.into())
    }
}

impl Store {
    /// Registers a server and its pool; `Conflict` if the id is taken.
    pub async fn create_server(&self, server: &Server, actor: &str) -> Result<(), StoreError> {
        let row = ServerRow::from_server(server)?;
        let mut audit = AuditRecord::new(actor, "server.create", Some(&server.id), None, Some(server));
        let pool_id = format!("pool-{}", uuid::Uuid::new_v4().simple());
        with_db!(self, |pool, d| {
            let mut tx = begin_write(pool, d).await?;
            let inserted = bind_server!(sqlx::query(INSERT), row).execute(&mut *tx).await;
            match inserted {
                Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict(format!("server {}", server.id))),
                other => other?,
            };
            sqlx::query(INSERT_POOL)
                .bind(&pool_id)
                .bind(server.id.as_str())
                .bind(server.pool.pool_strategy.as_str())
                .bind(pool_status(&server.pool))
                .bind(server.updated_at)
                .execute(&mut *tx)
                .await?;
            insert_audit(&mut *tx, &mut audit).await?;
            tx.commit().await?;
            self.audit_committed(&[audit]);
            Ok(())
        })
    }

    pub async fn get_server(&self, id: &ServerId) -> Result<Option<Server>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = $1");
        with_db!(self, |pool, _d| {
            match sqlx::query(&sql).bind(id.as_str()).fetch_optional(pool).await? {
                None => Ok(None),
                Some(row) => Ok(Some(server_row!(row, self.defaults.as_deref()))),
            }
        })
    }

    /// Every server, ordered by id.
    pub async fn list_servers(&self) -> Result<Vec<Server>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM servers ORDER BY id");
        with_db!(self, |pool, _d| {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(server_row!(row, self.defaults.as_deref()));
            }
            Ok(out)
        })
    }

    /// Reads the server under a write lock, lets `change` compute its next state (or refuse),
    /// writes it with an audit row tagged `action`, and returns it.
    pub async fn update_server<E>(
        &self,
        id: &ServerId,
        actor: &str,
        action: &str,
        change: impl FnOnce(&Server) -> Result<Server, E>,
    ) -> Result<Server, UpdateError<E>> {
        with_db!(self, |pool, d| {
            let mut tx = begin_write(pool, d).await?;
            let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = $1{}", d.for_update());
            let Some(row) = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&mut *tx).await? else {
                return Err(UpdateError::NotFound);
            };
            let before = server_row!(row, self.defaults.as_deref());
            let after = change(&before).map_err(UpdateError::Rejected)?;
            let mut audit = AuditRecord::new(actor, action, Some(id), Some(&before), Some(&after));
            let row = ServerRow::from_server(&after)?;
            bind_server!(sqlx::query(UPDATE), row).execute(&mut *tx).await?;
            sqlx::query(UPDATE_POOL)
                .bind(id.as_str())
                .bind(after.pool.pool_strategy.as_str())
                .bind(pool_status(&after.pool))
                .bind(after.updated_at)
                .execute(&mut *tx)
                .await?;
            insert_audit(&mut *tx, &mut audit).await?;
            tx.commit().await?;
            self.audit_committed(&[audit]);
            Ok(after)
        })
    }

    /// Deletes a server and its pool; `Ok(false)` if there was none.
    pub async fn delete_server(&self, id: &ServerId, actor: &str) -> Result<bool, StoreError> {
        with_db!(self, |pool, d| {
            let mut tx = begin_write(pool, d).await?;
            let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = $1{}", d.for_update());
            let Some(row) = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&mut *tx).await? else {
                return Ok(false);
            };
            let before = server_row!(row, self.defaults.as_deref());
            sqlx::query("DELETE FROM session_pools WHERE server_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM servers WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            let mut audit = AuditRecord::new(actor, "server.delete", Some(id), Some(&before), None);
            insert_audit(&mut *tx, &mut audit).await?;
            tx.commit().await?;
            self.audit_committed(&[audit]);
            Ok(true)
        })
    }

    /// Applies `change` to the listed servers (all servers when `ids` is `None`) in one
    /// transaction: an unknown id or one refusal and nothing is changed.
    pub async fn bulk_update<E>(
        &self,
        ids: Option<&[ServerId]>,
        actor: &str,
        action: &str,
        change: impl Fn(&Server) -> Result<Server, E>,
    ) -> Result<Vec<Server>, BulkError<E>> {
        with_db!(self, |pool, d| {
            let mut tx = begin_write(pool, d).await?;
            let sql = format!("SELECT {COLUMNS} FROM servers ORDER BY id{}", d.for_update());
            let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
            let mut current = Vec::with_capacity(rows.len());
            for row in rows {
                current.push(server_row!(row, self.defaults.as_deref()));
            }
            let targets: Vec<Server> = match ids {
                None => current,
                Some(ids) => {
                    let mut picked = Vec::with_capacity(ids.len());
                    for id in ids {
                        match current.iter().find(|s| &s.id == id) {
                            Some(s) if !picked.iter().any(|p: &Server| &p.id == id) => picked.push(s.clone()),
                            Some(_) => {}
                            None => return Err(BulkError::NotFound(id.clone())),
                        }
                    }
                    picked
                }
            };
            let mut updated = Vec::with_capacity(targets.len());
            let mut audits = Vec::with_capacity(targets.len());
            for before in &targets {
                let after = change(before).map_err(|e| BulkError::Rejected(before.id.clone(), e))?;
                updated.push(after);
            }
            for (before, after) in targets.iter().zip(&updated) {
                let row = ServerRow::from_server(after)?;
                bind_server!(sqlx::query(UPDATE), row).execute(&mut *tx).await?;
                sqlx::query(UPDATE_POOL)
                    .bind(after.id.as_str())
                    .bind(after.pool.pool_strategy.as_str())
                    .bind(pool_status(&after.pool))
                    .bind(after.updated_at)
                    .execute(&mut *tx)
                    .await?;
                let mut audit = AuditRecord::new(actor, action, Some(&after.id), Some(before), Some(after));
                insert_audit(&mut *tx, &mut audit).await?;
                audits.push(audit);
            }
            tx.commit().await?;
            self.audit_committed(&audits);
            Ok(updated)
        })
    }
}

impl Store {
    /// The pool's durable id (`session_pools.id`, e.g. `pool-…`) and status.
    pub async fn pool_row(&self, server: &ServerId) -> Result<Option<(String, String)>, StoreError> {
        with_db!(self, |pool, _d| {
            let row = sqlx::query("SELECT id, status FROM session_pools WHERE server_id = $1")
                .bind(server.as_str())
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some((r.try_get("id")?, r.try_get("status")?))),
                None => Ok(None),
            }
        })
    }
}
