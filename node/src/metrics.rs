//! Prometheus metrics at `GET /metrics`, in two parts:
//!
//! - **Fleet-wide pool figures** with the seed names (`mcpgateway_pool_*`, label `server_id`).
//!   They are read from the control plane — the same Redis for every node — so every node reports
//!   the same values, and a node that just started reports the fleet's history. Rendering costs
//!   one `stats` and one `slots` call per pool, so the text is cached for [`FLEET_CACHE`]: however
//!   often Prometheus (or several of them) scrape, a node reads each pool at most that often.
//!   Counters are fleet totals, so dashboards aggregate them across nodes with `max by
//!   (server_id)`, never `sum`.
//! - **This node's own series** (label `node`): HTTP requests by kind and status and their
//!   duration (`mcp_gateway_request_*`, seed 002's names), whether the control plane answers,
//!   whether the node is draining, and its connection hygiene: requests in flight, requests shed
//!   over `SERVER_MAX_CONCURRENT_REQUESTS`, connections open, closed on a timeout (by phase) or
//!   refused over `SERVER_MAX_CONNECTIONS_PER_IP`. Every label takes a few fixed values (never a
//!   client address or a user), all present from the start at 0. They live in a `prometheus`
//!   registry.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use poolgate_control::{PoolStats, SlotRecord, SlotState, BUCKETS_MS};
use poolgate_shared::config::redact_credentials;
use poolgate_shared::domain::server::Server;

/// How long the fleet-wide text is reused.
pub const FLEET_CACHE: Duration = Duration::from_secs(2);

/// Request-duration buckets (seconds) of the node's HTTP histogram.
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `kind` values of shed requests (probes are never shed).
const SHED_KINDS: [&str; 2] = ["mcp", "admin"];
/// The `phase` values of connection timeouts.
pub const TIMEOUT_PHASES: [&str; 3] = ["header", "idle", "body"];

pub struct NodeMetrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub control_up: IntGauge,
    pub draining: IntGauge,
    /// Requests refused for fairness, by server and reason (never by user: unbounded labels).
    pub refusals: IntCounterVec,
    /// Requests refused at once because the node was at its concurrency cap, by kind.
    pub shed: IntCounterVec,
    /// Requests counted against the cap right now (set when `/metrics` is rendered).
    pub in_flight: IntGauge,
    pub connections_open: IntGauge,
    /// Connections closed because a client was too slow or idle too long, by phase.
    pub connection_timeouts: IntCounterVec,
    /// Connections closed at accept, by reason.
    pub connections_refused: IntCounterVec,
    fleet: Mutex<Option<(Instant, String)>>,
    /// One refresh at a time; concurrent scrapes wait for it and share its result.
    refreshing: tokio::sync::Mutex<()>,
}

impl NodeMetrics {
    pub fn new(node_id: &str) -> Result<NodeMetrics, prometheus::Error> {
        let registry = Registry::new();
        let node = |opts: Opts| opts.const_label("node", node_id);
        let requests = IntCounterVec::new(
            node(Opts::new(
                "mcp_gateway_requests_total",
                "HTTP requests this node answered, by kind (mcp, admin, probe) and status code",
            )),
            &["kind", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "mcp_gateway_request_duration_seconds",
                "Time to the response head (streams: until their first byte), by kind",
            )
            .const_label("node", node_id)
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["kind"],
        )?;
        let control_up = IntGauge::with_opts(node(Opts::new(
            "poolgate_control_plane_up",
            "1 while this node's last control-plane read succeeded",
        )))?;
        let draining = IntGauge::with_opts(node(Opts::new(
            "poolgate_node_draining",
            "1 while this node shuts down (refusing new requests)",
        )))?;
        let refusals = IntCounterVec::new(
            node(Opts::new(
                "mcp_gateway_requests_refused_total",
                "MCP requests this node refused for fairness or overload, by server and reason (rate_limited, shed, \
                 quota_sessions, quota_inflight)",
            )),
            &["server_id", "reason"],
        )?;
        let shed = IntCounterVec::new(
            node(Opts::new(
                "mcp_gateway_requests_shed_total",
                "Requests answered 503 at once because this node was at SERVER_MAX_CONCURRENT_REQUESTS, by kind (mcp, admin)",
            )),
            &["kind"],
        )?;
        for kind in SHED_KINDS {
            shed.with_label_values(&[kind]);
        }
        let in_flight = IntGauge::with_opts(node(Opts::new(
            "mcp_gateway_requests_in_flight",
            "Requests this node is serving that count against SERVER_MAX_CONCURRENT_REQUESTS",
        )))?;
        let connections_open = IntGauge::with_opts(node(Opts::new(
            "mcp_gateway_connections_open",
            "Client connections open on this node",
        )))?;
        let connection_timeouts = IntCounterVec::new(
            node(Opts::new(
                "mcp_gateway_connection_timeouts_total",
                "Client connections closed on a timeout, by phase: header (first request head not complete within SERVER_HEADER_READ_TIMEOUT), idle (next request head not complete within SERVER_KEEPALIVE_TIMEOUT), body (request body not complete within SERVER_BODY_READ_TIMEOUT)",
            )),
            &["phase"],
        )?;
        for phase in TIMEOUT_PHASES {
            connection_timeouts.with_label_values(&[phase]);
        }
        let connections_refused = IntCounterVec::new(
            node(Opts::new(
                "mcp_gateway_connections_refused_total",
                "Client connections closed as soon as accepted, by reason (per_ip_limit: SERVER_MAX_CONNECTIONS_PER_IP)",
            )),
            &["reason"],
        )?;
        connections_refused.with_label_values(&["per_ip_limit"]);
        let build = IntGauge::with_opts(
            node(Opts::new(
                "poolgate_build_info",
                "Always 1; the version label tells the build",
            ))
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build.set(1);
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(control_up.clone()),
            Box::new(draining.clone()),
            Box::new(refusals.clone()),
            Box::new(shed.clone()),
            Box::new(in_flight.clone()),
            Box::new(connections_open.clone()),
            Box::new(connection_timeouts.clone()),
            Box::new(connections_refused.clone()),
            Box::new(build),
        ] {
            registry.register(c)?;
        }
        Ok(NodeMetrics {
            registry,
            requests,
            duration,
            control_up,
            draining,
            refusals,
            shed,
            in_flight,
            connections_open,
            connection_timeouts,
            connections_refused,
            fleet: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Records one answered HTTP request.
    pub fn observe(&self, kind: &str, status: u16, elapsed: Duration) {
        self.requests.with_label_values(&[kind, status_label(status)]).inc();
        self.duration.with_label_values(&[kind]).observe(elapsed.as_secs_f64());
    }

    /// Records one request refused for fairness.
    pub fn refused(&self, server_id: &str, reason: &str) {
        self.refusals.with_label_values(&[server_id, reason]).inc();
    }

    /// The node's own series in the text exposition format.
    pub fn node_text(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec only fails on invalid metric data we never build.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding node metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The cached fleet-wide text if fresh; otherwise `refresh` builds it (one refresh at a time).
    pub async fn fleet_text<F, Fut>(&self, refresh: F) -> String
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<String>>,
    {
        if let Some(text) = self.cached() {
            return text;
        }
        let _one = self.refreshing.lock().await;
        if let Some(text) = self.cached() {
            return text;
        }
        match refresh().await {
            Some(text) => {
                self.control_up.set(1);
                if let Ok(mut slot) = self.fleet.lock() {
                    *slot = Some((Instant::now(), text.clone()));
                }
                text
            }
            None => {
                // Stale fleet figures would mislead: report none, and that the control plane is down.
                self.control_up.set(0);
                String::new()
            }
        }
    }

    fn cached(&self) -> Option<String> {
        let slot = self.fleet.lock().ok()?;
        slot.as_ref()
            .filter(|(at, _)| at.elapsed() < FLEET_CACHE)
            .map(|(_, t)| t.clone())
    }
}

/// Status codes as label values without allocating per request for the common ones.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// What the fleet-wide text is built from, per pool.
pub struct PoolFigures<'a> {
    pub server: &'a Server,
    pub stats: PoolStats,
    pub slots: Vec<SlotRecord>,
    pub health_score: f64,
}

/// A slot's status label: unhealthy wins, then active (holding a lease), draining, idle.
/// Retired slots count only while a lease still runs on them.
fn status_of(s: &SlotRecord) -> Option<&'static str> {
    match s.state {
        SlotState::Unhealthy => Some("unhealthy"),
        _ if s.leases > 0 => Some("active"),
        SlotState::Draining => Some("draining"),
        SlotState::Ready => Some("idle"),
        SlotState::Retired | SlotState::Closed => None,
    }
}

const STATUSES: [&str; 4] = ["active", "idle", "unhealthy", "draining"];

/// A fleet-wide counter: name part, help, and where it is in the stats.
type Counter = (&'static str, &'static str, fn(&PoolStats) -> u64);

/// Writes one pool's lines of a family: (output, pool, escaped server id).
type Lines<'r> = &'r dyn Fn(&mut String, &PoolFigures<'_>, &str);

/// Renders the fleet-wide series; `now_ms` dates session ages.
pub fn render_fleet(pools: &[PoolFigures<'_>], leader: Option<(String, u64)>, now_ms: i64) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, body: Lines<'_>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in pools {
            body(&mut out, p, &label(p.server.id.as_str()));
        }
    };
    family(
        "mcpgateway_pool_sessions_total",
        "gauge",
        "Upstream sessions in the pool by status (active, idle, unhealthy, draining), fleet-wide",
        &|out, p, id| {
            for status in STATUSES {
                let n = p.slots.iter().filter(|s| status_of(s) == Some(status)).count();
                let _ = writeln!(
                    out,
                    "mcpgateway_pool_sessions_total{{server_id=\"{id}\",status=\"{status}\"}} {n}"
                );
            }
        },
    );
    let counters: [Counter; 7] = [
        ("acquisitions", "Leases granted", |s| s.acquisitions),
        ("releases", "Leases ended by their holder or reclaimed", |s| s.releases),
        ("creates", "Upstream sessions created", |s| s.creates),
        ("destroys", "Upstream sessions removed from the pool", |s| s.destroys),
        (
            "timeouts",
            "Acquisitions that found no session within pool_timeout",
            |s| s.timeouts,
        ),
        ("errors", "Leased requests that ended in an error", |s| s.errors),
        (
            "rebinds",
            "Bindings moved to another session after theirs went away",
            |s| s.rebinds,
        ),
    ];
    for (what, help, get) in counters {
        let name = format!("mcpgateway_pool_{what}_total");
        family(&name, "counter", &format!("{help}, fleet-wide"), &|out, p, id| {
            let _ = writeln!(out, "{name}{{server_id=\"{id}\"}} {}", get(&p.stats));
        });
    }
    family(
        "mcpgateway_pool_wait_time_seconds",
        "histogram",
        "Time acquisitions waited for a session (granted ones), fleet-wide",
        &|out, p, id| histogram(out, "mcpgateway_pool_wait_time_seconds", id, &p.stats.wait),
    );
    family(
        "poolgate_pool_request_duration_seconds",
        "histogram",
        "Time leased requests held their session, as the releasing node measured it, fleet-wide",
        &|out, p, id| histogram(out, "poolgate_pool_request_duration_seconds", id, &p.stats.hold),
    );
    family(
        "mcpgateway_pool_session_age_seconds",
        "gauge",
        "Age of the pool's live upstream sessions (quantiles 0.5, 0.9, 0.99)",
        &|out, p, id| {
            let mut ages: Vec<f64> = p
                .slots
                .iter()
                .filter(|s| status_of(s).is_some())
                .map(|s| (now_ms - s.created_ms).max(0) as f64 / 1000.0)
                .collect();
            ages.sort_by(f64::total_cmp);
            for q in ["0.5", "0.9", "0.99"] {
                let v = quantile(&ages, q.parse().unwrap_or(0.5));
                let _ = writeln!(
                    out,
                    "mcpgateway_pool_session_age_seconds{{server_id=\"{id}\",quantile=\"{q}\"}} {v}"
                );
            }
        },
    );
    family(
        "mcpgateway_pool_health_score",
        "gauge",
        "Pool health in [0, 1] (formula in the README)",
        &|out, p, id| {
            let _ = writeln!(
                out,
                "mcpgateway_pool_health_score{{server_id=\"{id}\"}} {}",
                p.health_score
            );
        },
    );
    family(
        "mcp_gateway_circuit_breaker_state",
        "gauge",
        "Circuit breaker of each upstream endpoint, fleet-wide: 0 closed, 1 open, 2 half-open (seed 002)",
        &|out, p, id| {
            for (i, e) in p.server.endpoints.iter().enumerate() {
                let state = p.stats.breaker_state(i as u32) as u8;
                let endpoint = label(&redact_credentials(&e.url));
                let _ = writeln!(
                    out,
                    "mcp_gateway_circuit_breaker_state{{server_id=\"{id}\",endpoint=\"{endpoint}\"}} {state}"
                );
            }
        },
    );
    family(
        "mcpgateway_pool_max_size",
        "gauge",
        "Configured pool_max_size",
        &|out, p, id| {
            let _ = writeln!(
                out,
                "mcpgateway_pool_max_size{{server_id=\"{id}\"}} {}",
                p.server.pool.pool_max_size
            );
        },
    );
    family(
        "mcpgateway_pool_min_size",
        "gauge",
        "Configured pool_min_size",
        &|out, p, id| {
            let _ = writeln!(
                out,
                "mcpgateway_pool_min_size{{server_id=\"{id}\"}} {}",
                p.server.pool.pool_min_size
            );
        },
    );
    let (present, term) = leader.map_or((0, 0), |(_, t)| (1, t));
    let _ = writeln!(
        out,
        "# HELP poolgate_leader_present 1 while a coordinator holds the fleet's leadership\n\
         # TYPE poolgate_leader_present gauge\npoolgate_leader_present {present}\n\
         # HELP poolgate_leader_term The current leader's fencing token (0: none)\n\
         # TYPE poolgate_leader_term gauge\npoolgate_leader_term {term}"
    );
    out
}

/// Cumulative buckets in seconds, `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, id: &str, h: &poolgate_control::Histogram) {
    let mut cumulative = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le = BUCKETS_MS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |ms| format!("{}", *ms as f64 / 1000.0));
        let _ = writeln!(out, "{name}_bucket{{server_id=\"{id}\",le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(
        out,
        "{name}_sum{{server_id=\"{id}\"}} {}\n{name}_count{{server_id=\"{id}\"}} {cumulative}",
        h.sum_ms as f64 / 1000.0
    );
}

/// Nearest-rank quantile of sorted values (0 when empty).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A label value escaped for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(
            (quantile(&v, 0.5), quantile(&v, 0.9), quantile(&v, 0.99)),
            (5.0, 9.0, 10.0)
        );
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_seconds() {
        let mut h = poolgate_control::Histogram::default();
        h.buckets[0] = 2; // <= 1 ms
        h.buckets[3] = 1; // <= 25 ms
        h.buckets[BUCKETS_MS.len()] = 1; // above 30 s
        h.sum_ms = 40_020;
        let mut out = String::new();
        histogram(&mut out, "x", "s", &h);
        assert!(out.contains("x_bucket{server_id=\"s\",le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{server_id=\"s\",le=\"0.025\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{server_id=\"s\",le=\"30\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{server_id=\"s\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(
            out.contains("x_sum{server_id=\"s\"} 40.02\nx_count{server_id=\"s\"} 4\n"),
            "{out}"
        );
    }
}
