//! DNS rebinding protection for the MCP endpoint (the MCP transport specification requires
//! servers to validate `Origin`). A browser page on another site can make a user's browser call a
//! gateway it can reach (a local one especially); the browser then sends that site's `Origin`.
//! So a request whose `Origin` is present and not allowed gets 403 and nothing else. Requests
//! without `Origin` — every non-browser client: SDKs, agents, curl — pass.
//!
//! Allowed: the origins in `ALLOWED_ORIGINS` (`*` for any), or by default only the origin of the
//! host the request was sent to. A rebinding attack makes the attacker's name resolve to the
//! gateway, so its requests carry that name as `Host` and pass a same-host check: a node bound to
//! a loopback address therefore also requires `Host` to name the loopback (`localhost`,
//! `127.x.y.z`, `[::1]`).

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use super::McpError;
use crate::state::AppState;

/// Whether `host` (a `Host` header value, port optional) names the loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a request is refused, if it is.
pub(super) fn refusal(allowed: &[String], loopback_bind: bool, headers: &HeaderMap) -> Option<String> {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if loopback_bind {
        if let Some(h) = host.filter(|h| !is_loopback_host(h)) {
            return Some(format!("Forbidden: Host {h:?} is not this loopback-bound server"));
        }
    }
    let origin = headers.get(ORIGIN)?;
    let Ok(origin) = origin.to_str() else {
        return Some("Forbidden: the Origin header is not valid".to_owned());
    };
    let normalized = origin.trim_end_matches('/').to_ascii_lowercase();
    let ok = if allowed.is_empty() {
        // Same host: the origin's authority is the one the request was sent to.
        let authority = reqwest::Url::parse(&normalized).ok().and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        });
        matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
    } else {
        allowed.iter().any(|a| a == "*" || *a == normalized)
    };
    (!ok).then(|| format!("Forbidden: Origin {origin:?} is not allowed (ALLOWED_ORIGINS)"))
}

/// The middleware: 403 with a JSON-RPC error for a refused request, else on to the endpoint.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let server = &state.config.server;
    let loopback_bind = is_loopback_host(&server.host);
    match refusal(&server.allowed_origins, loopback_bind, request.headers()) {
        Some(why) => {
            tracing::debug!(%why, "MCP request refused");
            McpError::Forbidden(why).out_of_band()
        }
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(HOST, v.parse().expect("header"));
        }
        if let Some(v) = origin {
            h.insert(ORIGIN, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn loopback_names() {
        for ok in [
            "localhost",
            "LOCALHOST:4444",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:4444",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:4444",
            "10.0.0.1:4444",
            "localhost.evil.example",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }

    #[test]
    fn same_host_by_default_and_no_origin_passes() {
        let none: Vec<String> = vec![];
        assert_eq!(refusal(&none, true, &headers(Some("127.0.0.1:4444"), None)), None);
        assert_eq!(
            refusal(
                &none,
                true,
                &headers(Some("127.0.0.1:4444"), Some("http://127.0.0.1:4444"))
            ),
            None
        );
        assert!(refusal(
            &none,
            true,
            &headers(Some("127.0.0.1:4444"), Some("http://evil.example"))
        )
        .is_some());
        assert!(refusal(&none, true, &headers(Some("127.0.0.1:4444"), Some("null"))).is_some());
        // Rebinding: the attacker's name as Host and Origin, on a loopback-bound node.
        assert!(refusal(
            &none,
            true,
            &headers(Some("evil.example:4444"), Some("http://evil.example:4444"))
        )
        .is_some());
        // A node bound to all interfaces serves whatever name it is reached by, same-host only.
        assert_eq!(
            refusal(
                &none,
                false,
                &headers(Some("mcp.example.com"), Some("https://mcp.example.com"))
            ),
            None
        );
    }

    #[test]
    fn the_allow_list_decides_when_set() {
        let list = vec!["https://app.example.com".to_owned()];
        let h = |o| headers(Some("mcp.example.com"), Some(o));
        assert_eq!(refusal(&list, false, &h("https://app.example.com")), None);
        assert_eq!(refusal(&list, false, &h("https://APP.example.com/")), None);
        assert!(refusal(&list, false, &h("https://mcp.example.com")).is_some());
        assert_eq!(refusal(&["*".to_owned()], false, &h("https://any.example")), None);
    }
}
