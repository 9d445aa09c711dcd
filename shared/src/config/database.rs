//! `database.*`: which database, and so which SQL dialect.

use std::fmt;

use super::keys;
use super::sources::{redact_url, Sources};
use super::{ConfigError, Summary};

/// Embedded mode keeps its database in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://poolgate.db";

/// Which database, and so which dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    Postgres,
    Sqlite,
}

/// `database.*`.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub kind: DatabaseKind,
    /// Whether `DATABASE_URL` was given rather than defaulted.
    pub explicit: bool,
    /// The PostgreSQL connection pool of each process.
    pub pool: DbPoolSettings,
}

/// `DB_POOL_SIZE` + `DB_MAX_OVERFLOW` (the seeds' SQLAlchemy names) map onto one sqlx limit: at
/// most size + overflow connections per process, opened on demand and closed after 10 minutes
/// idle; `DB_POOL_TIMEOUT` is how long a query waits for a connection; `DB_POOL_RECYCLE` closes
/// connections older than it (0: never). SQLite uses its own small fixed pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbPoolSettings {
    pub size: u32,
    pub max_overflow: u32,
    pub timeout: std::time::Duration,
    pub recycle: Option<std::time::Duration>,
}

pub const DEFAULT_DB_POOL_SIZE: u32 = 10;
pub const DEFAULT_DB_POOL_TIMEOUT: u64 = 5;

impl Default for DbPoolSettings {
    fn default() -> Self {
        DbPoolSettings {
            size: DEFAULT_DB_POOL_SIZE,
            max_overflow: 0,
            timeout: std::time::Duration::from_secs(DEFAULT_DB_POOL_TIMEOUT),
            recycle: None,
        }
    }
}

impl DbPoolSettings {
    /// The most connections one process opens.
    pub fn max_connections(&self) -> u32 {
        self.size.saturating_add(self.max_overflow)
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("kind", &self.kind)
            .finish()
    }
}

impl DatabaseSettings {
    pub(super) fn load(src: &Sources<'_>) -> Result<DatabaseSettings, ConfigError> {
        let raw = src.get_opt_string(&keys::DATABASE_URL);
        let explicit = raw.is_some();
        let url = raw.map(|(v, _)| v).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let size: u32 = src.get(
            &keys::DB_POOL_SIZE,
            DEFAULT_DB_POOL_SIZE,
            "must be a whole number of connections",
        )?;
        if size == 0 {
            return Err(ConfigError::invalid(keys::DB_POOL_SIZE.env, "must be at least 1"));
        }
        let recycle: u64 = src.get(
            &keys::DB_POOL_RECYCLE,
            0,
            "must be a whole number of seconds (0: never)",
        )?;
        Ok(DatabaseSettings {
            kind: database_kind(&url)?,
            url,
            explicit,
            pool: DbPoolSettings {
                size,
                max_overflow: src.get(&keys::DB_MAX_OVERFLOW, 0, "must be a whole number of connections")?,
                timeout: src.get_secs(&keys::DB_POOL_TIMEOUT, DEFAULT_DB_POOL_TIMEOUT)?,
                recycle: (recycle > 0).then(|| std::time::Duration::from_secs(recycle)),
            },
        })
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        out.push((keys::DATABASE_URL.env, redact_url(&self.url)));
        out.extend([
            (keys::DB_POOL_SIZE.env, self.pool.size.to_string()),
            (keys::DB_MAX_OVERFLOW.env, self.pool.max_overflow.to_string()),
            (keys::DB_POOL_TIMEOUT.env, self.pool.timeout.as_secs().to_string()),
            (
                keys::DB_POOL_RECYCLE.env,
                self.pool.recycle.map_or(0, |r| r.as_secs()).to_string(),
            ),
        ]);
    }
}

fn database_kind(url: &str) -> Result<DatabaseKind, ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseKind::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(DatabaseKind::Sqlite)
    } else {
        Err(ConfigError::invalid(
            keys::DATABASE_URL.env,
            "must start with postgres://, postgresql:// or sqlite:",
        ))
    }
}
