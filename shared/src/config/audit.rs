//! `pooling.audit.*` (seed 000's "Audit Logging"): besides the `admin_audit_log` table, each
//! process can append every admin change it commits to a file, one JSON line per change
//! (`poolgate_store::AuditFile`). Whether the file can be opened is checked when the node or the
//! coordinator starts, not here: loading the configuration touches no file but `config.yaml`.

use std::path::PathBuf;

use super::keys;
use super::sources::Sources;
use super::{ConfigError, Summary};

pub const DEFAULT_AUDIT_ENABLED: bool = false;
/// Seed 000's path.
pub const DEFAULT_AUDIT_LOG_PATH: &str = "/var/log/mcpgateway/pool-audit.log";

/// `pooling.audit.*`.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// `POOL_AUDIT_ENABLED`: append each committed admin change to `log_path`.
    pub enabled: bool,
    /// `POOL_AUDIT_LOG_PATH`.
    pub log_path: PathBuf,
}

impl AuditSettings {
    pub(super) fn load(src: &Sources<'_>) -> Result<AuditSettings, ConfigError> {
        Ok(AuditSettings {
            enabled: src.get_bool(&keys::POOL_AUDIT_ENABLED, DEFAULT_AUDIT_ENABLED)?,
            log_path: src
                .get_opt_string(&keys::POOL_AUDIT_LOG_PATH)
                .map_or_else(|| PathBuf::from(DEFAULT_AUDIT_LOG_PATH), |(v, _)| PathBuf::from(v)),
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let raw = self.log_path.as_os_str();
        if raw.is_empty() || raw.to_string_lossy().ends_with('/') {
            return Err(ConfigError::invalid(
                keys::POOL_AUDIT_LOG_PATH.env,
                format!("must name a file (got {:?})", self.log_path.display().to_string()),
            ));
        }
        Ok(())
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        out.extend([
            (keys::POOL_AUDIT_ENABLED.env, self.enabled.to_string()),
            (keys::POOL_AUDIT_LOG_PATH.env, self.log_path.display().to_string()),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(
            &move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            None,
        )
    }

    #[test]
    fn the_audit_file_is_off_by_default_at_the_seed_path() {
        let c = load(&[]).expect("defaults");
        assert!(!c.pooling.audit.enabled);
        assert_eq!(
            c.pooling.audit.log_path,
            PathBuf::from("/var/log/mcpgateway/pool-audit.log")
        );
        let c = load(&[("POOL_AUDIT_ENABLED", "true"), ("POOL_AUDIT_LOG_PATH", " /tmp/a.log ")]).expect("valid");
        assert!(c.pooling.audit.enabled);
        assert_eq!(c.pooling.audit.log_path, PathBuf::from("/tmp/a.log"));
        for (key, value) in [
            ("POOL_AUDIT_ENABLED", "sometimes"),
            ("POOL_AUDIT_LOG_PATH", "/var/log/"),
        ] {
            let err = load(&[(key, value)]).expect_err("refused");
            assert_eq!(err.key(), Some(key), "{err}");
        }
    }
}
