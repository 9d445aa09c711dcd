//! The poolgate gateway node: an axum server with the MCP endpoint, the admin REST API, probes
//! and Prometheus metrics. It holds no state another node could need: durable configuration is
//! in the store, fleet-wide pool state in the control plane.
//!
//! # Layout
//! - [`cli`]: the `poolgate-node` commands (serve, migrate, token).
//! - [`app`]: start-up wiring and serving.
//! - [`connections`]: the HTTP/1.1 accept loop: TCP_NODELAY, header-read and idle keep-alive
//!   timeouts, the per-IP connection limit, graceful stop.
//! - [`state`]: what handlers share.
//! - [`http`]: routes, auth extractors, JSON errors, probes, admin API, MCP endpoint.
//! - [`metrics`]: `/metrics` (fleet-wide pool series and this node's own).
//! - [`drain`]: graceful shutdown (in-flight tracking).
//! - [`session_id`]: encrypted, self-describing client session ids (only the node issues and
//!   reads them).

pub mod app;
pub mod cli;
pub mod connections;
pub mod drain;
pub mod http;
pub mod metrics;
pub mod session_id;
pub mod state;
