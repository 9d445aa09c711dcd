//! The durable store: server and pool configuration, the admin audit log, metrics history and
//! the upstream sessions' history.
//!
//! All SQL of the project lives in this module. One [`Store`] serves PostgreSQL (distributed
//! mode) and SQLite (embedded mode) through native sqlx pools; every method's body is written
//! once inside [`with_db!`], which expands it for each backend so both are type-checked. Queries
//! use the SQL both dialects share (`$n` placeholders, `RETURNING`, `ON CONFLICT`); the few
//! differences (row locks, write transactions) go through [`Dialect`].
//!
//! The store is never on the MCP request hot path: nodes read configuration when they sync a
//! pool, not per request.
//!
//! `audit_file.rs` ([`AuditFile`]) appends each committed audit row to the audit file
//! (`POOL_AUDIT_ENABLED`), off the request path.

mod audit;
mod audit_file;
mod metrics;
mod migrations;
mod servers;
mod sessions;
mod settings;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use audit::AuditEntry;
pub use audit_file::{AuditFile, AUDIT_QUEUE};
pub use metrics::StrategySnapshot;
pub use migrations::{MigrationState, MigrationStatus};
pub use servers::{BulkError, UpdateError};
pub use sessions::{Recorded, SessionRow, StoredSession};
pub use settings::GENERATED_JWT_SECRET;

use poolgate_shared::config::{redact_url, DatabaseKind, DbPoolSettings};

/// How long a caller waits for a database connection before the store reports it unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite connections: WAL allows concurrent readers; writers serialize on `BEGIN IMMEDIATE`.
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// Store failures. `Unavailable` is the database being unreachable or refusing; the rest are
/// about the data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database url {url}: {reason}")]
    BadUrl { url: String, reason: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            other => StoreError::Unavailable(other),
        }
    }
}

/// The SQL dialect of the connected database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Suffix that locks selected rows until the transaction ends. SQLite has no row locks; its
    /// write transactions start with `BEGIN IMMEDIATE` instead (see [`begin_write`]).
    fn for_update(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }
}

#[derive(Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$dialect` to its [`Dialect`]. The body
/// is expanded once per backend, so it is written once and type-checked against both.
macro_rules! with_db {
    ($store:expr, |$pool:ident, $dialect:ident| $body:expr) => {
        match &$store.db {
            $crate::Db::Postgres($pool) => {
                #[allow(unused_variables)]
                let $dialect = $crate::Dialect::Postgres;
                $body
            }
            $crate::Db::Sqlite($pool) => {
                #[allow(unused_variables)]
                let $dialect = $crate::Dialect::Sqlite;
                $body
            }
        }
    };
}
pub(crate) use with_db;

/// A transaction that will write: SQLite takes the write lock up front so that a read-then-write
/// cannot fail half-way with SQLITE_BUSY; PostgreSQL locks rows with `FOR UPDATE` instead.
async fn begin_write<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    dialect: Dialect,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    match dialect {
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Dialect::Postgres => pool.begin().await,
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// `POOL_DEFAULT_*`: what the pool fields a server never set resolve to when read.
    defaults: Option<std::sync::Arc<poolgate_shared::domain::pool::PoolConfig>>,
    /// `POOL_AUDIT_ENABLED`: committed audit rows are also appended here.
    audit_file: Option<AuditFile>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dialect", &self.dialect()).finish()
    }
}

impl Store {
    /// Connects lazily: the pool is created at once and connections are opened on first use, so
    /// a node can start (and report `/ready` 503) while its database is down. SQLite files are
    /// created if missing.
    pub fn connect(url: &str, kind: &DatabaseKind) -> Result<Store, StoreError> {
        Store::connect_with(url, kind, &DbPoolSettings::default())
    }

    /// [`Store::connect`] with the PostgreSQL pool sized by `pool` (`DB_POOL_SIZE`,
    /// `DB_MAX_OVERFLOW`, `DB_POOL_TIMEOUT`, `DB_POOL_RECYCLE`); SQLite keeps its own limits.
    pub fn connect_with(url: &str, kind: &DatabaseKind, pool: &DbPoolSettings) -> Result<Store, StoreError> {
        let bad = |reason: String| StoreError::BadUrl {
            url: redact_url(url),
            reason,
        };
        let db = match kind {
            DatabaseKind::Postgres => {
                let opts = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
                Db::Postgres(
                    PgPoolOptions::new()
                        .max_connections(pool.max_connections())
                        .acquire_timeout(pool.timeout)
                        .max_lifetime(pool.recycle)
                        .connect_lazy_with(opts),
                )
            }
            DatabaseKind::Sqlite => {
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(|e| bad(e.to_string()))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(ACQUIRE_TIMEOUT);
                Db::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(SQLITE_MAX_CONNECTIONS)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .connect_lazy_with(opts),
                )
            }
        };
        Ok(Store {
            db,
            defaults: None,
            audit_file: None,
        })
    }

    /// Servers read from this store resolve the pool fields they never set to `defaults`
    /// (`POOL_DEFAULT_*`), so a changed default applies to existing servers after a restart.
    pub fn with_pool_defaults(mut self, defaults: poolgate_shared::domain::pool::PoolConfig) -> Store {
        self.defaults = Some(std::sync::Arc::new(defaults));
        self
    }

    /// Every audit row committed through this store (and its clones made afterwards) is also
    /// appended to `file` (`POOL_AUDIT_ENABLED`).
    pub fn with_audit_file(mut self, file: Option<AuditFile>) -> Store {
        self.audit_file = file;
        self
    }

    pub fn audit_file(&self) -> Option<&AuditFile> {
        self.audit_file.as_ref()
    }

    pub fn dialect(&self) -> Dialect {
        with_db!(self, |_pool, dialect| dialect)
    }

    /// One round trip, for `/ready`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_db!(self, |pool, _d| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    /// Closes every connection (tests and shutdown), after the audit file has every line queued.
    pub async fn close(&self) {
        if let Some(file) = &self.audit_file {
            if !file.flush().await {
                tracing::warn!(path = %file.path().display(), "audit file: queued lines not written before shutdown");
            }
        }
        with_db!(self, |pool, _d| pool.close().await)
    }
}

/// True when `e` is a unique-constraint violation (duplicate key) in either dialect.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}
