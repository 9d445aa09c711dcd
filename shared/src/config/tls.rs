//! `upstream.tls.*` (seed 000's "TLS Configuration", `POOL_TLS_*`): how the node and the
//! coordinator talk HTTPS to upstream MCP servers, for every server alike (no per-server
//! override). The built-in web roots are always trusted; `POOL_TLS_CA_PATH` adds a PEM bundle of
//! private CAs to them, and `POOL_TLS_CERT_PATH` + `POOL_TLS_KEY_PATH` are a client certificate
//! (PEM chain) and its PEM private key presented to upstreams that ask for one (mTLS). Nothing
//! applies unless `POOL_TLS_ENABLED` is true; paths set while it is false are shown as ignored in
//! the start-up summary.
//!
//! Only the rules between the keys are checked here: the files are read (and must parse) when a
//! process builds its upstream client (`poolgate_control::slots::upstream_client`), a start-up
//! error naming the key and the file — loading the configuration touches no file but
//! `config.yaml`.

use std::path::PathBuf;

use super::keys;
use super::sources::Sources;
use super::{ConfigError, Summary};

pub const DEFAULT_TLS_ENABLED: bool = false;

/// `upstream.tls.*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `POOL_TLS_ENABLED`: apply the paths below; false ignores them.
    pub enabled: bool,
    /// `POOL_TLS_CA_PATH`: PEM CA certificates trusted in addition to the web roots.
    pub ca_path: Option<PathBuf>,
    /// `POOL_TLS_CERT_PATH`: the client certificate chain (PEM), leaf first.
    pub cert_path: Option<PathBuf>,
    /// `POOL_TLS_KEY_PATH`: the client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_path: Option<PathBuf>,
}

impl TlsSettings {
    pub(super) fn load(src: &Sources<'_>) -> Result<TlsSettings, ConfigError> {
        // An empty value (the Kubernetes ConfigMap's unset paths) counts as unset.
        let path = |key: &keys::Key| {
            src.get_opt_string(key)
                .filter(|(v, _)| !v.is_empty())
                .map(|(v, _)| PathBuf::from(v))
        };
        Ok(TlsSettings {
            enabled: src.get_bool(&keys::POOL_TLS_ENABLED, DEFAULT_TLS_ENABLED)?,
            ca_path: path(&keys::POOL_TLS_CA_PATH),
            cert_path: path(&keys::POOL_TLS_CERT_PATH),
            key_path: path(&keys::POOL_TLS_KEY_PATH),
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        match (&self.cert_path, &self.key_path) {
            (Some(_), None) => Err(ConfigError::invalid(
                keys::POOL_TLS_KEY_PATH.env,
                "is required with POOL_TLS_CERT_PATH: a client certificate needs its private key",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                keys::POOL_TLS_CERT_PATH.env,
                "is required with POOL_TLS_KEY_PATH: a private key needs its client certificate",
            )),
            _ => Ok(()),
        }
    }

    /// The client certificate and key paths, when TLS is enabled and both are set.
    pub fn identity(&self) -> Option<(&PathBuf, &PathBuf)> {
        match (self.enabled, &self.cert_path, &self.key_path) {
            (true, Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        }
    }

    /// The extra CA bundle, when TLS is enabled and it is set.
    pub fn ca(&self) -> Option<&PathBuf> {
        self.ca_path.as_ref().filter(|_| self.enabled)
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        let show = |p: &Option<PathBuf>| match p {
            None => "(none)".to_owned(),
            Some(p) if self.enabled => p.display().to_string(),
            Some(p) => format!("{} (ignored: POOL_TLS_ENABLED is false)", p.display()),
        };
        out.extend([
            (keys::POOL_TLS_ENABLED.env, self.enabled.to_string()),
            (keys::POOL_TLS_CERT_PATH.env, show(&self.cert_path)),
            (keys::POOL_TLS_KEY_PATH.env, show(&self.key_path)),
            (keys::POOL_TLS_CA_PATH.env, show(&self.ca_path)),
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
    fn tls_is_off_by_default_and_paths_apply_only_when_enabled() {
        let c = load(&[]).expect("defaults");
        assert_eq!(c.upstream.tls, TlsSettings::default());
        // Empty values (the ConfigMap's) are unset.
        let c = load(&[
            ("POOL_TLS_ENABLED", "true"),
            ("POOL_TLS_CA_PATH", ""),
            ("POOL_TLS_CERT_PATH", " "),
            ("POOL_TLS_KEY_PATH", ""),
        ])
        .expect("valid");
        assert_eq!((c.upstream.tls.ca(), c.upstream.tls.identity()), (None, None));
        let c = load(&[
            ("POOL_TLS_CA_PATH", "/etc/certs/ca.crt"),
            ("POOL_TLS_CERT_PATH", "/etc/certs/pool.crt"),
        ])
        .expect("disabled: the paths are ignored");
        assert_eq!((c.upstream.tls.ca(), c.upstream.tls.identity()), (None, None));
        let summary = c.summary();
        let ca = summary
            .iter()
            .find(|(k, _)| *k == "POOL_TLS_CA_PATH")
            .expect("summary line");
        assert!(ca.1.contains("ignored"), "{ca:?}");
        let c = load(&[
            ("POOL_TLS_ENABLED", "true"),
            ("POOL_TLS_CA_PATH", "/etc/certs/ca.crt"),
            ("POOL_TLS_CERT_PATH", "/etc/certs/pool.crt"),
            ("POOL_TLS_KEY_PATH", "/etc/certs/pool.key"),
        ])
        .expect("valid");
        assert_eq!(c.upstream.tls.ca(), Some(&PathBuf::from("/etc/certs/ca.crt")));
        assert!(c.upstream.tls.identity().is_some());
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_the_reverse() {
        for (set, missing) in [
            ("POOL_TLS_CERT_PATH", "POOL_TLS_KEY_PATH"),
            ("POOL_TLS_KEY_PATH", "POOL_TLS_CERT_PATH"),
        ] {
            let err = load(&[("POOL_TLS_ENABLED", "true"), (set, "/etc/certs/x.pem")]).expect_err("refused");
            assert_eq!(err.key(), Some(missing), "{err}");
        }
        let err = load(&[("POOL_TLS_ENABLED", "maybe")]).expect_err("refused");
        assert_eq!(err.key(), Some("POOL_TLS_ENABLED"), "{err}");
    }
}
