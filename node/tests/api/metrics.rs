//! `/metrics`: fleet-wide pool series agree across nodes and match the pool's stats; per-node
//! request series count each node's own traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use poolgate_loadtests::upstream::UpstreamConfig;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;
use crate::mcp_client::{register, two_nodes, unique_prefix, upstream, Client};

/// Scrapes `/metrics` (no token needed) into `series -> value`.
pub async fn scrape(app: &TestApp) -> BTreeMap<String, f64> {
    let resp = app.client.get(app.url("/metrics")).send().await.expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = resp.text().await.expect("body");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (
                series.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("value of {l}")),
            )
        })
        .collect()
}

/// The fleet-wide part: pool series and the leader.
fn fleet(m: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    m.iter()
        .filter(|(k, _)| {
            k.starts_with("mcpgateway_pool_") || k.starts_with("poolgate_pool_") || k.starts_with("poolgate_leader")
        })
        .filter(|(k, _)| !k.starts_with("mcpgateway_pool_session_age_seconds"))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn mcp_requests(m: &BTreeMap<String, f64>) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with("mcp_gateway_requests_total{") && k.contains("kind=\"mcp\""))
        .map(|(_, v)| v)
        .sum()
}

/// Two nodes on one Redis: after a scripted sequence of calls spread over both, their fleet-wide
/// series are identical and equal the pool's stats; each node's request counter counts its own.
#[tokio::test]
async fn two_nodes_agree_on_fleet_wide_series() {
    let up = upstream(UpstreamConfig::default()).await;
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    register(
        &a,
        "metered",
        &up.url(),
        json!({"pool_max_size": 4, "pool_isolation": "shared", "pool_strategy": "least_connections"}),
    )
    .await;
    let mut on_a = Client::new(&a, "metered", "alice");
    on_a.initialize().await;
    let on_b = on_a.via(&b, "metered");
    for i in 0..3 {
        on_a.call_ok(10 + i, "echo", json!({"text": "a"})).await;
    }
    for i in 0..2 {
        on_b.call_ok(20 + i, "echo", json!({"text": "b"})).await;
    }
    let (status, stats) = a.admin(Method::GET, "/api/servers/metered/pool/stats", None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");

    let (ma, mb) = (scrape(&a).await, scrape(&b).await);
    let (fa, fb) = (fleet(&ma), fleet(&mb));
    assert!(fa.len() > 30, "fleet series: {fa:#?}");
    assert_eq!(fa, fb, "every node reports the same fleet-wide values");
    let get = |name: &str| fa.get(&format!("{name}{{server_id=\"metered\"}}")).copied();
    let acquisitions = stats["total_acquisitions"].as_f64().expect("acquisitions");
    assert!(acquisitions >= 5.0, "{stats}");
    assert_eq!(get("mcpgateway_pool_acquisitions_total"), Some(acquisitions));
    assert_eq!(get("mcpgateway_pool_releases_total"), stats["total_releases"].as_f64());
    assert_eq!(get("mcpgateway_pool_creates_total"), stats["total_creates"].as_f64());
    assert_eq!(get("mcpgateway_pool_timeouts_total"), Some(0.0));
    assert_eq!(get("mcpgateway_pool_health_score"), Some(1.0));
    assert_eq!(get("mcpgateway_pool_max_size"), Some(4.0));
    // Every acquisition was granted without waiting (one bucket <= 1 ms, cumulative upward).
    assert_eq!(get("mcpgateway_pool_wait_time_seconds_count"), Some(acquisitions));
    assert_eq!(
        fa.get("mcpgateway_pool_wait_time_seconds_bucket{server_id=\"metered\",le=\"+Inf\"}"),
        Some(&acquisitions)
    );
    let by_status: f64 = ["active", "idle", "unhealthy", "draining"]
        .iter()
        .map(|s| fa[&format!("mcpgateway_pool_sessions_total{{server_id=\"metered\",status=\"{s}\"}}")])
        .sum();
    assert_eq!(
        Some(by_status),
        stats["total_sessions"].as_f64(),
        "statuses sum to the sessions"
    );

    // Per-node series: A answered the initialize, its notification and 3 calls; B 2 calls.
    assert_eq!((mcp_requests(&ma), mcp_requests(&mb)), (5.0, 2.0));
    assert_eq!(
        ma.get(&format!("poolgate_control_plane_up{{node=\"{}\"}}", node_of(&ma))),
        Some(&1.0)
    );
    b.stop().await;
    a.stop().await;
}

/// The node label of a scrape (from its build info).
fn node_of(m: &BTreeMap<String, f64>) -> String {
    let key = m
        .keys()
        .find(|k| k.starts_with("poolgate_build_info{"))
        .expect("build info");
    key.split("node=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("node label")
        .to_owned()
}

/// Scrapes are cached: a burst of scrapes reads the control plane once per cache period, so the
/// fleet-wide figures a scrape shows can lag by up to that period but never go backwards.
#[tokio::test]
async fn scrapes_within_the_cache_period_share_one_read() {
    let up = upstream(UpstreamConfig::default()).await;
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    register(
        &a,
        "cached",
        &up.url(),
        json!({"pool_max_size": 2, "pool_isolation": "shared"}),
    )
    .await;
    let first = fleet(&scrape(&a).await);
    let mut c = Client::new(&b, "cached", "bob");
    c.initialize().await;
    c.call_ok(1, "echo", json!({"text": "x"})).await;
    let key = "mcpgateway_pool_acquisitions_total{server_id=\"cached\"}";
    // Within the period (the calls take milliseconds of the 2 s): the cached figure.
    let again = fleet(&scrape(&a).await);
    assert_eq!((first.get(key), again.get(key)), (Some(&0.0), Some(&0.0)));
    // Node B's cache was empty: it reads the control plane at once.
    let (_, stats) = a.admin(Method::GET, "/api/servers/cached/pool/stats", None).await;
    let now = stats["total_acquisitions"].as_f64();
    assert!(now >= Some(1.0), "{stats}");
    assert_eq!(fleet(&scrape(&b).await).get(key).copied(), now);
    // The period over, A reads again.
    tokio::time::sleep(poolgate_node::metrics::FLEET_CACHE + Duration::from_millis(100)).await;
    let later = fleet(&scrape(&a).await);
    assert_eq!(later.get(key).copied(), now, "{later:#?}");
    b.stop().await;
    a.stop().await;
}

/// Every metric the Grafana dashboard and the Prometheus rules in deploy/ query is one a live
/// node exports (histograms by their family name), so the dashboard and alerts cannot rot.
#[tokio::test]
async fn dashboard_and_alerts_query_only_exported_metrics() {
    let up = upstream(UpstreamConfig::default()).await;
    let (a, b) = two_nodes(&unique_prefix(), &[]).await;
    register(
        &a,
        "dash",
        &up.url(),
        json!({"pool_max_size": 2, "pool_isolation": "shared"}),
    )
    .await;
    let mut c = Client::new(&a, "dash", "alice");
    c.initialize().await;
    c.call_ok(1, "echo", json!({"text": "x"})).await;
    let exported: std::collections::BTreeSet<String> = scrape(&a)
        .await
        .keys()
        .map(|series| series.split('{').next().unwrap_or(series).to_owned())
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for file in [
        "deploy/grafana/pool-dashboard.json",
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/seed_alerts.yml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        // The queries: every `expr` of the dashboard's targets and of the rules.
        let doc: serde_json::Value = if file.ends_with(".json") {
            serde_json::from_str(&text).expect(file)
        } else {
            serde_yaml::from_str(&text).expect(file)
        };
        let mut exprs = Vec::new();
        collect_exprs(&doc, &mut exprs);
        assert!(!exprs.is_empty(), "{file}: no expressions");
        // The coordinator's own series come from the coordinator (coordinator/tests).
        let names = exprs
            .iter()
            .flat_map(|e| metric_names(e))
            .filter(|n| !n.starts_with("poolgate_coordinator_"));
        for name in names {
            // Counters, gauges and histogram series (`_bucket`, `_sum`, `_count`) as exported.
            assert!(
                exported.contains(&name),
                "{file} queries {name}, which no node exports: {exported:#?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} metric references found");
    b.stop().await;
    a.stop().await;
}

/// Identifiers that look like poolgate's metric names (`mcpgateway_*`, `mcp_gateway_*`,
/// `poolgate_*`), excluding recording-rule and label names that share the prefix.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let starts = ["mcpgateway_", "mcp_gateway_", "poolgate_"]
            .iter()
            .any(|p| rest.starts_with(p));
        let boundary =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':');
        if starts && boundary {
            let len = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            out.push(rest[..len].to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every string under an `expr` key.
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
