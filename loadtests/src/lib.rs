//! poolgate load tests and benchmarks.
//!
//! # Layout
//! - [`upstream`]: a fast test upstream MCP server (Streamable HTTP) with a per-session counter,
//!   used by the tests and the load scenarios (`test-upstream` binary).
//! - `bin/control_bench.rs`: the control-plane benchmark.

pub mod upstream;
