//! Domain types that cannot hold invalid values: servers, endpoints, pool configuration.

pub mod pool;
pub mod server;

use chrono::{DateTime, SubsecRound as _, Utc};

/// The current time at the precision both databases keep (microseconds), so a value written and
/// read back compares equal to the one returned at write time.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
