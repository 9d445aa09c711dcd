//! poolgate's core library: what every other crate needs, and nothing about pools, databases,
//! upstreams or HTTP serving.
//!
//! # Layout
//! - [`config`]: typed configuration from environment and `config.yaml`, with the seed's key names.
//! - [`domain`]: servers, endpoints and pool configuration, validated on construction.
//! - [`auth`]: HS256 bearer tokens.
//! - [`shutdown`], [`telemetry`]: process plumbing (signals, in-flight trackers, logging).
//!
//! The other crates: `poolgate-store` (the durable store), `poolgate-upstream` (the upstream MCP
//! client), `poolgate-control` (the control plane and the pool client), `poolgate-housekeeping`
//! (leader election, the leader's passes, the optimizer); `poolgate-node` and
//! `poolgate-coordinator` are the binaries.

pub mod auth;
pub mod config;
pub mod domain;
pub mod shutdown;
pub mod telemetry;
