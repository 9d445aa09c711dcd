//! poolgate load tests and benchmarks.
//!
//! # Layout
//! - [`upstream`]: a fast test upstream MCP server (Streamable HTTP) with a per-session counter,
//!   used by the tests and the load scenarios (`test-upstream` binary).
//! - [`hostile`]: a hostile test upstream (raw HTTP/1.1) that misbehaves per tool name — huge or
//!   endless events, slow or missing answers, garbage, vanishing sessions — and a black hole
//!   (`test-upstream --hostile 1`).
//! - [`chaos`]: a TCP proxy tests switch between pass, delay, cut and black-hole (Redis,
//!   PostgreSQL or an upstream taken away mid-write and given back).
//! - [`launch`]: the one process launcher (test upstreams, nodes, private Redis, Sentinel and
//!   PostgreSQL, killed on drop) of the benchmarks, the scenarios and the tests; a small RESP client.
//! - [`loadgen`]: the fleet load generator (closed and open loop, session churn, HDR histograms;
//!   `loadgen` binary) — any Streamable HTTP MCP URL on loopback.
//! - [`scenarios`]: scenarios (a)-(i) of the load-test issue, each starting its own processes,
//!   and the report (JSON, Markdown, PNG plots; `scenarios` binary).
//! - `bin/control_bench.rs`: the control-plane benchmark.

pub mod chaos;
pub mod hostile;
pub mod launch;
pub mod loadgen;
pub mod scenarios;
pub mod upstream;
