//! Fleet housekeeping: leader election with fencing and the leader's loops. The coordinator
//! process runs them in distributed mode; the embedded node runs them itself.

pub mod cleanup;
pub mod health;
pub mod leader;
pub mod snapshot;
pub mod warmup;

pub use cleanup::{Cleanup, CleanupReport};
pub use health::{HealthCheck, HealthReport};
pub use leader::{Leadership, Role, Timing};
pub use snapshot::{SnapshotReport, Snapshots};
pub use warmup::WarmUp;

use crate::config::Config;

/// Leadership timing from the configuration.
pub fn timing(config: &Config) -> Timing {
    let r = &config.pooling.redis;
    Timing {
        ttl: r.leader_ttl,
        heartbeat: r.leader_heartbeat_interval,
        renew_deadline: r.leader_renew_deadline,
    }
}
