//! `instance_settings`: values generated once and kept across restarts.

use chrono::Utc;
use sqlx::Row as _;

use super::{with_db, Store, StoreError};

/// Name of the embedded node's generated JWT secret.
pub const GENERATED_JWT_SECRET: &str = "generated_jwt_secret";

impl Store {
    /// Returns the stored value of `name`, storing `make()`'s value first if there is none. Two
    /// processes racing here agree on one value: the insert does nothing on conflict and both
    /// read back the winner.
    pub async fn setting_get_or_init(&self, name: &str, make: impl FnOnce() -> String) -> Result<String, StoreError> {
        let candidate = make();
        with_db!(self, |pool, _d| {
            sqlx::query(
                "INSERT INTO instance_settings (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&candidate)
            .bind(Utc::now())
            .execute(pool)
            .await?;
            let row = sqlx::query("SELECT value FROM instance_settings WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?;
            Ok(row.try_get("value")?)
        })
    }
}
