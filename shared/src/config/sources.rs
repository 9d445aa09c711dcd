//! The raw layers under every section: the environment (seed names, then aliases) over the
//! flattened `config.yaml` over defaults, read through [`Sources`] so that every error names the
//! key the way the operator wrote it. Also [`Secret`] and [`redact_url`], which keep secrets out
//! of logs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::keys::{self, Key};
use super::ConfigError;

/// Where a value came from; error messages name it the way the operator wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Env(&'static str),
    File(&'static str),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::File(path) => write!(f, "config.yaml {path}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// The raw layers before typing: the environment and the flattened file.
pub(crate) struct Sources<'a> {
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) file: BTreeMap<String, String>,
}

impl Sources<'_> {
    /// The raw value of `key` and where it came from; empty environment values count as unset.
    pub(super) fn raw(&self, key: &Key) -> Option<(String, Origin)> {
        std::iter::once(key.env)
            .chain(key.aliases.iter().copied())
            .find_map(|name| {
                (self.env)(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (v, Origin::Env(name)))
            })
            .or_else(|| self.file.get(key.path).map(|v| (v.clone(), Origin::File(key.path))))
    }

    pub(super) fn error(key: &Key, origin: &Origin, rule: impl fmt::Display) -> ConfigError {
        match origin {
            Origin::File(path) => ConfigError::invalid(format!("{} (config.yaml {path})", key.env), rule.to_string()),
            Origin::Env(name) => ConfigError::invalid(*name, rule.to_string()),
            Origin::Default => ConfigError::invalid(key.env, rule.to_string()),
        }
    }

    pub(super) fn get<T: FromStr>(&self, key: &Key, default: T, rule: &str) -> Result<T, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some((raw, origin)) => raw
                .trim()
                .parse()
                .map_err(|_| Self::error(key, &origin, format!("{rule} (got {raw:?})"))),
        }
    }

    pub(super) fn get_bool(&self, key: &Key, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some((raw, origin)) => parse_bool(&raw)
                .ok_or_else(|| Self::error(key, &origin, format!("must be true or false (got {raw:?})"))),
        }
    }

    pub(super) fn get_opt_string(&self, key: &Key) -> Option<(String, Origin)> {
        self.raw(key).map(|(v, o)| (v.trim().to_owned(), o))
    }

    pub(super) fn get_secs(&self, key: &Key, default: u64) -> Result<Duration, ConfigError> {
        let secs = self.get(key, default, "must be a whole number of seconds")?;
        if secs == 0 {
            let origin = self.raw(key).map(|(_, o)| o).unwrap_or(Origin::Default);
            return Err(Self::error(key, &origin, "must be greater than 0 seconds"));
        }
        Ok(Duration::from_secs(secs))
    }
}

/// A comma-separated list (or a YAML list, which the file layer joins with commas), trimmed,
/// without empty items.
pub(super) fn list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

pub(super) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Flattens a YAML mapping into dotted paths, refusing keys that no setting uses.
pub(super) fn flatten_yaml(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let yaml_err = |message: String| ConfigError::Yaml {
        path: path.to_owned(),
        message,
    };
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| yaml_err(e.to_string()))?;
    let mut out = BTreeMap::new();
    if value.is_null() {
        return Ok(out);
    }
    fn walk(prefix: &str, value: &serde_yaml::Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        let known = |p: &str| keys::ALL.iter().any(|k| k.path == p);
        let is_section = |p: &str| keys::ALL.iter().any(|k| k.path.starts_with(&format!("{p}.")));
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in map {
                    let name = k.as_str().ok_or_else(|| format!("non-string key under {prefix:?}"))?;
                    let full = if prefix.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    if !known(&full) && !is_section(&full) {
                        return Err(format!("unknown key {full:?}"));
                    }
                    walk(&full, v, out)?;
                }
                Ok(())
            }
            _ if !known(prefix) => Err(format!("{prefix:?} must be a section (a mapping)")),
            serde_yaml::Value::Null => Ok(()),
            serde_yaml::Value::Bool(b) => {
                out.insert(prefix.to_owned(), b.to_string());
                Ok(())
            }
            serde_yaml::Value::Number(n) => {
                out.insert(prefix.to_owned(), n.to_string());
                Ok(())
            }
            serde_yaml::Value::String(s) => {
                out.insert(prefix.to_owned(), s.clone());
                Ok(())
            }
            serde_yaml::Value::Sequence(items) => {
                let parts = items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{prefix:?} must be a list of strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(prefix.to_owned(), parts.join(","));
                Ok(())
            }
            serde_yaml::Value::Tagged(_) => Err(format!("{prefix:?}: YAML tags are not supported")),
        }
    }
    walk("", &value, &mut out).map_err(yaml_err)?;
    Ok(out)
}

/// A value that must not appear in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Shows an upstream endpoint URL without what may be a credential — the user info and every
/// query value — for readers, error messages, logs and metric labels (the scheme, host, port,
/// path and query parameter names stay, so the endpoint is still recognisable).
pub fn redact_credentials(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return "[unparsable url]".to_owned();
    };
    if !u.username().is_empty() {
        let _ = u.set_username("***");
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut q = u.query_pairs_mut();
        q.clear();
        for k in names {
            q.append_pair(&k, "***");
        }
    }
    u.fragment().is_some().then(|| u.set_fragment(None));
    u.to_string()
}

#[cfg(test)]
#[test]
fn credentials_in_endpoint_urls_are_redacted() {
    assert_eq!(
        redact_credentials("https://bob:pw@h.example:8443/mcp?api_key=SECRET&team=x#frag"),
        "https://***:***@h.example:8443/mcp?api_key=***&team=***"
    );
    assert_eq!(redact_credentials("http://h/mcp"), "http://h/mcp");
    assert_eq!(redact_credentials("not a url"), "[unparsable url]");
}

/// Shows a URL with its password replaced, for logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            // set_password only fails for URLs that cannot hold one, which `password()` ruled out.
            let _ = u.set_password(Some("[redacted]"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "[unparsable url]".to_owned(),
    }
}
