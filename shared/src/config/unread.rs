//! No silently ignored setting: every environment variable with a prefix poolgate owns that it
//! does not read is named in a start-up warning — seed names poolgate knows but does not
//! support say why — so an operator following the seeds learns at once what has no effect.

use super::keys;

/// Prefixes of the environment poolgate owns.
const OWNED_PREFIXES: [&str; 10] = [
    "RATE_LIMIT_",
    "POOL_",
    "SERVER_",
    "REDIS_",
    "DB_",
    "JWT_",
    "UPSTREAM_",
    "SESSION_",
    "AUTH_",
    "POOLGATE_",
];

/// Read elsewhere than the configuration (tools and tests).
const READ_ELSEWHERE: [&str; 3] = [super::CONFIG_FILE_ENV, "POOLGATE_URL", "POOLGATE_TOKEN"];

/// Seed settings poolgate knows but does not apply, and why.
const UNSUPPORTED: [(&str, &str); 2] = [
    ("REDIS_SOCKET_TIMEOUT", "Redis calls are bounded by REDIS_POOL_TIMEOUT"),
    (
        "REDIS_SOCKET_CONNECT_TIMEOUT",
        "Redis connections are attempted for 2 s",
    ),
];

/// The variables among `names` that poolgate owns but does not read, each with the warning to
/// log: "NAME is not supported: why" or "NAME is not a poolgate setting".
pub fn unread_settings<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = names
        .filter(|n| OWNED_PREFIXES.iter().any(|p| n.starts_with(p)))
        .filter(|n| !n.starts_with("POOLGATE_TEST_") && !READ_ELSEWHERE.contains(n))
        .filter(|n| !keys::ALL.iter().any(|k| k.env == *n || k.aliases.contains(n)))
        .map(|n| match UNSUPPORTED.iter().find(|(u, _)| *u == n) {
            Some((_, why)) => format!("{n} is set but has no effect: not supported ({why})"),
            None => format!("{n} is set but is not a poolgate setting: it has no effect (see the configuration table in the README)"),
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_owned_names_are_reported_with_their_reason() {
        let env = [
            "POOL_ENABLED",
            "POOL_DEFAULT_MAX_SIZE",
            "POOL_MIN_SIZE",
            "POOL_TLS_CA_PATH",
            "REDIS_SOCKET_TIMEOUT",
            "POOL_DEFAUT_MAX_SIZE",
            "DB_POOL_SIZE",
            "DB_POOL_SIZ",
            "POOLGATE_CONFIG",
            "POOLGATE_TEST_PG_URL",
            "SERVER_KEEPALIVE_TIMEOUT",
            "SERVER_KEEPALIVE_TIMOUT",
            "HOME",
            "PATH",
        ];
        let warnings = unread_settings(env.into_iter());
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].starts_with("DB_POOL_SIZ is set but is not a poolgate setting"));
        assert!(warnings[1].starts_with("POOL_DEFAUT_MAX_SIZE is set but is not a poolgate setting"));
        assert!(warnings[2].starts_with("REDIS_SOCKET_TIMEOUT is set but has no effect: not supported ("));
        assert!(warnings[3].starts_with("SERVER_KEEPALIVE_TIMOUT is set but is not a poolgate setting"));
    }
}
