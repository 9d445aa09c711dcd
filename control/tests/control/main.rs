//! Control-plane tests: one conformance suite run unchanged against every backend — the
//! embedded twin, Redis standalone, a 3-master Redis Cluster and a Sentinel-managed Redis (all
//! started on loopback by `scripts/test.sh`) — plus seeded concurrency/property tests.
//!
//! # Layout
//! - `harness`: backends, per-test key prefixes, helpers (`warm`, `create_slot`, ...), a PRNG.
//! - `conformance`: lease life cycle, sync, waiting and timeouts; I7 on the Cluster.
//! - `invariants`: I1, I2, I3, I4, I8, I11.
//! - `breakers`: endpoint circuit breakers (open, route around, fail fast, half-open probe, close).
//! - `fairness`: per-user quotas, the unused-session TTL and the per-user rate limit.
//! - `strategies`: round_robin, least_connections, sticky, weighted.
//! - `leader`: leader election and fencing (I6).
//! - `properties`: seeded random concurrent workloads checking I1–I4 throughout.

mod harness;

mod breakers;
mod conformance;
mod fairness;
mod invariants;
mod leader;
mod properties;
mod strategies;
