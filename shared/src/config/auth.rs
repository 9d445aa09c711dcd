//! `auth.*`: bearer tokens (HS256 secret, admin roles) and the secrets of client session ids.

use super::keys;
use super::sources::{list, Secret, Sources};
use super::{ConfigError, Summary};

pub const DEFAULT_AUTH_REQUIRED: bool = true;
/// Prometheus scrapes on a private network without a token by default.
pub const DEFAULT_METRICS_AUTH_REQUIRED: bool = false;
pub const DEFAULT_POOL_ADMIN_ROLES: &str = "admin,operator";
/// A client session id is accepted for a day after it was issued; then its SDK re-initializes.
pub const DEFAULT_SESSION_MAX_AGE: u64 = 24 * 60 * 60;
/// HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// `auth.*`.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub required: bool,
    /// `POOL_ADMIN_AUTH_REQUIRED`: tokens on the admin API; `None`: as `required`.
    pub admin_auth_required: Option<bool>,
    /// Accept `AUTH_REQUIRED=false` on a non-loopback `HOST` (`ALLOW_INSECURE_AUTH_OFF`).
    pub allow_insecure_auth_off: bool,
    /// `/metrics` needs a bearer token (`METRICS_AUTH_REQUIRED`).
    pub metrics_auth_required: bool,
    pub jwt_secret_key: Option<Secret>,
    pub admin_roles: Vec<String>,
    /// Former secrets whose client session ids are still accepted (rotation).
    pub session_secret_fallbacks: Vec<Secret>,
    /// Former token secrets whose bearer tokens still verify (rotation).
    pub jwt_secret_key_fallbacks: Vec<Secret>,
    /// Bearer tokens must carry this `iss` (`JWT_ISSUER`), when set.
    pub jwt_issuer: Option<String>,
    /// Bearer tokens' `aud` must name this (`JWT_AUDIENCE`), when set.
    pub jwt_audience: Option<String>,
    /// A client session id older than this is refused with 404 (`SESSION_MAX_AGE`).
    pub session_max_age: std::time::Duration,
}

impl AuthSettings {
    /// Whether the admin API needs a token (`POOL_ADMIN_AUTH_REQUIRED`, else `AUTH_REQUIRED`).
    pub fn admin_required(&self) -> bool {
        self.admin_auth_required.unwrap_or(self.required)
    }

    pub(super) fn load(src: &Sources<'_>) -> Result<AuthSettings, ConfigError> {
        let roles = src
            .get_opt_string(&keys::POOL_ADMIN_ROLES)
            .map(|(v, _)| v)
            .unwrap_or_else(|| DEFAULT_POOL_ADMIN_ROLES.to_owned());
        Ok(AuthSettings {
            required: src.get_bool(&keys::AUTH_REQUIRED, DEFAULT_AUTH_REQUIRED)?,
            admin_auth_required: match src.get_opt_string(&keys::POOL_ADMIN_AUTH_REQUIRED) {
                Some((v, _)) if !v.is_empty() => {
                    Some(src.get_bool(&keys::POOL_ADMIN_AUTH_REQUIRED, DEFAULT_AUTH_REQUIRED)?)
                }
                _ => None,
            },
            allow_insecure_auth_off: src.get_bool(&keys::ALLOW_INSECURE_AUTH_OFF, false)?,
            metrics_auth_required: src.get_bool(&keys::METRICS_AUTH_REQUIRED, DEFAULT_METRICS_AUTH_REQUIRED)?,
            jwt_secret_key: src.get_opt_string(&keys::JWT_SECRET_KEY).map(|(v, _)| Secret(v)),
            admin_roles: list(&roles).map(str::to_owned).collect(),
            session_secret_fallbacks: src
                .get_opt_string(&keys::SESSION_SECRET_FALLBACKS)
                .map(|(v, _)| list(&v).map(Secret::new).collect())
                .unwrap_or_default(),
            jwt_secret_key_fallbacks: src
                .get_opt_string(&keys::JWT_SECRET_KEY_FALLBACKS)
                .map(|(v, _)| list(&v).map(Secret::new).collect())
                .unwrap_or_default(),
            jwt_issuer: src.get_opt_string(&keys::JWT_ISSUER).map(|(v, _)| v),
            jwt_audience: src.get_opt_string(&keys::JWT_AUDIENCE).map(|(v, _)| v),
            session_max_age: src.get_secs(&keys::SESSION_MAX_AGE, DEFAULT_SESSION_MAX_AGE)?,
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.admin_roles.is_empty() {
            return Err(ConfigError::invalid(
                keys::POOL_ADMIN_ROLES.env,
                "must name at least one role",
            ));
        }
        if let Some(secret) = &self.jwt_secret_key {
            if secret.expose().len() < MIN_JWT_SECRET_BYTES {
                return Err(ConfigError::invalid(
                    keys::JWT_SECRET_KEY.env,
                    format!("must be at least {MIN_JWT_SECRET_BYTES} bytes for HS256"),
                ));
            }
        }
        for (key, secrets) in [
            (&keys::SESSION_SECRET_FALLBACKS, &self.session_secret_fallbacks),
            (&keys::JWT_SECRET_KEY_FALLBACKS, &self.jwt_secret_key_fallbacks),
        ] {
            if secrets.iter().any(|s| s.expose().len() < MIN_JWT_SECRET_BYTES) {
                return Err(ConfigError::invalid(
                    key.env,
                    format!("every secret must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn summary(&self, out: &mut Summary) {
        let secret = if self.jwt_secret_key.is_some() {
            "[redacted]"
        } else {
            "(unset)"
        };
        out.extend([
            (keys::AUTH_REQUIRED.env, self.required.to_string()),
            (keys::POOL_ADMIN_AUTH_REQUIRED.env, self.admin_required().to_string()),
            (
                keys::ALLOW_INSECURE_AUTH_OFF.env,
                self.allow_insecure_auth_off.to_string(),
            ),
            (keys::METRICS_AUTH_REQUIRED.env, self.metrics_auth_required.to_string()),
            (keys::JWT_SECRET_KEY.env, secret.to_owned()),
            (keys::POOL_ADMIN_ROLES.env, self.admin_roles.join(",")),
            (
                keys::JWT_ISSUER.env,
                self.jwt_issuer.clone().unwrap_or_else(|| "(not checked)".to_owned()),
            ),
            (
                keys::JWT_AUDIENCE.env,
                self.jwt_audience.clone().unwrap_or_else(|| "(not checked)".to_owned()),
            ),
            (keys::SESSION_MAX_AGE.env, self.session_max_age.as_secs().to_string()),
            (
                keys::SESSION_SECRET_FALLBACKS.env,
                format!("{} secret(s) [redacted]", self.session_secret_fallbacks.len()),
            ),
            (
                keys::JWT_SECRET_KEY_FALLBACKS.env,
                format!("{} secret(s) [redacted]", self.jwt_secret_key_fallbacks.len()),
            ),
        ]);
    }
}
