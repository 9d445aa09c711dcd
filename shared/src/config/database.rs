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
        Ok(DatabaseSettings {
            kind: database_kind(&url)?,
            url,
            explicit,
        })
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        out.push((keys::DATABASE_URL.env, redact_url(&self.url)));
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
