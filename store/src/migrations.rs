//! Schema migrations, compiled into the binaries from `migrations/{postgres,sqlite}/`.
//!
//! Each migration is a reversible pair `<version>_<verb>_<noun>.{up,down}.sql`. Running `up` is
//! idempotent (applied versions are recorded in `_sqlx_migrations` with a checksum) and safe when
//! several nodes start at once: on PostgreSQL the migrator holds an advisory lock while it works,
//! so the second node waits and then finds nothing left to do. `down` reverts the newest applied
//! migration (or every one above a target version) — the seed's rollback procedure.

use std::borrow::Cow;

use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};

use super::{with_db, Store, StoreError};

/// One migration's files, as compiled in.
struct Embedded {
    version: i64,
    description: &'static str,
    up: &'static str,
    down: &'static str,
}

macro_rules! embed {
    ($dialect:literal: $($version:literal $name:literal),+ $(,)?) => {
        &[$(Embedded {
            version: $version,
            description: $name,
            up: include_str!(concat!("../../migrations/", $dialect, "/", stringify!($version), "_", $name, ".up.sql")),
            down: include_str!(concat!("../../migrations/", $dialect, "/", stringify!($version), "_", $name, ".down.sql")),
        }),+]
    };
}

const POSTGRES: &[Embedded] = embed!("postgres":
    20260101000001 "create_servers",
    20260101000002 "create_session_pools",
    20260101000003 "create_mcp_sessions",
    20260101000004 "create_pool_strategy_metrics",
    20260101000005 "create_admin_audit_log",
    20260101000006 "create_instance_settings",
    20260101000007 "optimizer_inputs",
    20260101000008 "mcp_sessions_close_reason",
    20260101000009 "pool_defaults",
    20260101000011 "pool_fairness",
);

const SQLITE: &[Embedded] = embed!("sqlite":
    20260101000001 "create_servers",
    20260101000002 "create_session_pools",
    20260101000003 "create_mcp_sessions",
    20260101000004 "create_pool_strategy_metrics",
    20260101000005 "create_admin_audit_log",
    20260101000006 "create_instance_settings",
    20260101000007 "optimizer_inputs",
    20260101000008 "mcp_sessions_close_reason",
    20260101000009 "pool_defaults",
    20260101000011 "pool_fairness",
);

fn migrator(list: &[Embedded]) -> Migrator {
    let migrations = list
        .iter()
        .flat_map(|m| {
            let description = Cow::Borrowed(m.description.trim_start_matches(char::is_numeric));
            [
                Migration::new(
                    m.version,
                    description.clone(),
                    MigrationType::ReversibleUp,
                    Cow::Borrowed(m.up),
                    false,
                ),
                Migration::new(
                    m.version,
                    description,
                    MigrationType::ReversibleDown,
                    Cow::Borrowed(m.down),
                    false,
                ),
            ]
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        // A database migrated by a newer release (blue-green, canary, a rollback of the binary)
        // must not stop this one from starting: migrations are additive, so the older code runs
        // on the newer schema (SPEC §8 mixed versions). `migrate down` is the way back.
        ignore_missing: true,
        ..Migrator::DEFAULT
    }
}

/// Whether one migration is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrationState {
    Applied,
    Pending,
}

/// One line of `poolgate-node migrate status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub state: MigrationState,
}

impl Store {
    fn embedded(&self) -> &'static [Embedded] {
        with_db!(self, |_pool, dialect| match dialect {
            super::Dialect::Postgres => POSTGRES,
            super::Dialect::Sqlite => SQLITE,
        })
    }

    /// Applies every pending migration.
    pub async fn migrate_up(&self) -> Result<(), StoreError> {
        let m = migrator(self.embedded());
        with_db!(self, |pool, _d| m.run(pool).await)?;
        Ok(())
    }

    /// Reverts applied migrations newer than `target`; with `None`, only the newest one.
    /// Returns the versions reverted, newest first.
    pub async fn migrate_down(&self, target: Option<i64>) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> = self
            .migration_status()
            .await?
            .into_iter()
            .filter(|s| s.state == MigrationState::Applied)
            .map(|s| s.version)
            .collect();
        let target = match target {
            Some(t) => t,
            // Reverting the newest means keeping everything below it.
            None => match applied.len() {
                0 => return Ok(vec![]),
                n if n >= 2 => applied[n - 2],
                _ => 0,
            },
        };
        let m = migrator(self.embedded());
        with_db!(self, |pool, _d| m.undo(pool, target).await)?;
        Ok(applied.into_iter().rev().filter(|v| *v > target).collect())
    }

    /// Every known migration and whether it is applied.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        let applied = with_db!(self, |pool, _d| {
            let mut conn = pool.acquire().await?;
            conn.ensure_migrations_table().await?;
            conn.list_applied_migrations().await?
        });
        Ok(self
            .embedded()
            .iter()
            .map(|m| MigrationStatus {
                version: m.version,
                description: m.description.to_owned(),
                state: if applied.iter().any(|a| a.version == m.version) {
                    MigrationState::Applied
                } else {
                    MigrationState::Pending
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQLite files are the PostgreSQL ones with the type names translated; keep them so.
    #[test]
    fn sqlite_schema_follows_postgres() {
        assert_eq!(POSTGRES.len(), SQLITE.len());
        let translate = |s: &str| {
            s.replace("TIMESTAMPTZ", "TEXT")
                .replace("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT")
                .replace("DOUBLE PRECISION", "REAL")
        };
        for (pg, lite) in POSTGRES.iter().zip(SQLITE) {
            assert_eq!((pg.version, pg.description), (lite.version, lite.description));
            assert_eq!(translate(pg.up), lite.up, "{} up", pg.description);
            assert_eq!(translate(pg.down), lite.down, "{} down", pg.description);
        }
    }

    #[test]
    fn versions_increase() {
        assert!(POSTGRES.windows(2).all(|w| w[0].version < w[1].version));
    }
}
