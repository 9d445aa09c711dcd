//! The poolgate gateway node: an axum server with the admin REST API and probes (the MCP
//! endpoint and metrics arrive with later issues). It holds no state another node could need:
//! durable configuration is in the store, fleet-wide pool state in the control plane.
//!
//! # Layout
//! - [`cli`]: the `poolgate-node` commands (serve, migrate, token).
//! - [`app`]: start-up wiring and serving.
//! - [`state`]: what handlers share.
//! - [`http`]: routes, auth extractors, JSON errors, probes, admin API.

pub mod app;
pub mod cli;
pub mod http;
pub mod state;
