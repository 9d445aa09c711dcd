//! poolgate's shared library: everything the node and the coordinator both need, and nothing
//! about HTTP serving (no axum here).
//!
//! # Layout
//! - [`config`]: typed configuration from environment and `config.yaml`, with the seed's key names.
//! - [`domain`]: servers, endpoints and pool configuration, validated on construction.
//! - [`store`]: the durable store (PostgreSQL or SQLite through sqlx); all SQL lives there.
//! - [`control`]: the control plane seam (embedded or Redis) that holds fleet-wide pool state.
//! - [`auth`]: HS256 bearer tokens.
//! - [`upstream`]: the upstream MCP client (Streamable HTTP, incremental SSE).
//! - [`slots`]: the pool client: leases, opening and closing upstream sessions (one home for both
//!   the node and the leader's warm-up).
//! - [`session_id`]: encrypted, self-describing client session ids.
//! - [`housekeeping`]: leader election with fencing and the leader's loops.
//! - [`optimizer`]: the strategy optimizer (pure; a seeded pool simulation).
//! - [`shutdown`], [`telemetry`]: process plumbing both binaries share (signals, in-flight
//!   trackers, logging).

pub mod auth;
pub mod config;
pub mod control;
pub mod domain;
pub mod housekeeping;
pub mod optimizer;
pub mod session_id;
pub mod shutdown;
pub mod slots;
pub mod store;
pub mod telemetry;
pub mod upstream;
