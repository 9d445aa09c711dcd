//! HTTP-level tests of the node: one test binary (one link) with a module per area. Each test
//! starts its own node on port 0 against its own database, on PostgreSQL and on SQLite.

// Shared by the area modules.
mod helpers;
mod mcp_client;
mod peers;

mod audit;
mod audit_file;
mod auth;
mod bad_input;
mod bulk;
mod cli;
mod conformance;
mod connections;
mod converge;
mod fairness;
mod fuzz;
mod hostile;
mod mcp;
mod metrics;
mod migrations;
mod modern;
mod pool_config;
mod poolctl;
mod probes;
mod rolling;
mod sdk;
mod secrets;
mod seeds;
mod servers;
mod shutdown;
mod slots;
mod strategies;
mod streaming;
mod tls;
