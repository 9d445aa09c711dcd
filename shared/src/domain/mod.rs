//! Domain types that cannot hold invalid values: servers, endpoints, pool configuration.

pub mod pool;
pub mod server;
