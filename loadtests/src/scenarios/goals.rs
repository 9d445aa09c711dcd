//! The targets of the load-test issues, as data: what each figure must reach, in one table, so a
//! target is changed in one place and the report lists them all. A scenario measures the figure
//! and its baseline from the same run and hands both to `ScenarioResult::target`.

/// Which way a target points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    AtLeast,
    AtMost,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
        }
    }
}

/// One target. A `{}` in the name stands for the run's parameter (a rate, a mode).
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    pub name: &'static str,
    pub op: Op,
    pub value: f64,
    pub unit: &'static str,
}

pub const REDIS_NODE_THROUGHPUT: Goal = Goal {
    name: "node with Redis: throughput vs direct (session isolation, echo)",
    op: Op::AtLeast,
    value: 0.5,
    unit: "x",
};

pub const REDIS_NODE_P50_ADDED_OPEN: Goal = Goal {
    name: "node with Redis: p50 added at {} req/s (open loop)",
    op: Op::AtMost,
    value: 0.5,
    unit: "ms",
};

pub const REDIS_NODE_P99_ADDED_OPEN: Goal = Goal {
    name: "node with Redis: p99 added at {} req/s (open loop)",
    op: Op::AtMost,
    value: 2.0,
    unit: "ms",
};

pub const REDIS_NODE_P50_ADDED_UNLOADED: Goal = Goal {
    name: "node with Redis: p50 added, unloaded (1 worker)",
    op: Op::AtMost,
    value: 0.5,
    unit: "ms",
};

pub const REDIS_NODE_P99_ADDED_UNLOADED: Goal = Goal {
    name: "node with Redis: p99 added, unloaded (1 worker)",
    op: Op::AtMost,
    value: 2.0,
    unit: "ms",
};

pub const ROUND_TRIPS_SESSION: Goal = Goal {
    name: "Redis round trips per request, session isolation",
    op: Op::AtMost,
    value: 1.0,
    unit: "",
};

pub const ROUND_TRIPS_SHARED: Goal = Goal {
    name: "Redis round trips per request, shared isolation",
    op: Op::AtMost,
    value: 2.0,
    unit: "",
};

pub const SHARD_CEILING_LIGHT_LOAD: Goal = Goal {
    name: "one Redis shard's ceiling per pool, from this light-load window (shared isolation, 1e6 / script µs per request)",
    op: Op::AtLeast,
    value: 50_000.0,
    unit: "req/s",
};

pub const SHARD_CEILING_SATURATED: Goal = Goal {
    name: "one Redis shard's ceiling per pool at saturation (shared isolation: acquire + release back to back, 1e6 / script µs)",
    op: Op::AtLeast,
    value: 50_000.0,
    unit: "req/s",
};

pub const RSS_PER_IDLE_SESSION: Goal = Goal {
    name: "node RSS per idle client session ({})",
    op: Op::AtMost,
    value: 16.0,
    unit: "KiB",
};

pub const RSS_PER_POOLED_SESSION: Goal = Goal {
    name: "node RSS per pooled upstream session ({}, client session included)",
    op: Op::AtMost,
    value: 64.0,
    unit: "KiB",
};

pub const FLEET_ROUND_TRIPS_SESSION: Goal = Goal {
    name: "Redis round trips per request, session isolation, 3 nodes",
    op: Op::AtMost,
    value: 1.0,
    unit: "",
};

pub const FLEET_ROUND_TRIPS_SHARED: Goal = Goal {
    name: "Redis round trips per request, shared isolation, 3 nodes",
    op: Op::AtMost,
    value: 2.0,
    unit: "",
};

pub const FLEET_SHARD_CEILING: Goal = Goal {
    name: "one Redis shard's ceiling per pool, 3 nodes (shared isolation, 1e6 / script µs per request)",
    op: Op::AtLeast,
    value: 50_000.0,
    unit: "req/s",
};

pub const POOLED_VS_NONE_THROUGHPUT: Goal = Goal {
    name: "pooled vs none at 20 ms handshake: throughput",
    op: Op::AtLeast,
    value: 3.0,
    unit: "x",
};

pub const POOLED_VS_NONE_P50_LOWER: Goal = Goal {
    name: "pooled vs none at 20 ms handshake: p50 lower by",
    op: Op::AtLeast,
    value: 60.0,
    unit: "%",
};

pub const OVERLOAD_NON_503: Goal = Goal {
    name: "overload: errors other than 503",
    op: Op::AtMost,
    value: 0.0,
    unit: "",
};

pub const OVERLOAD_ADMITTED_P99: Goal = Goal {
    name: "overload: admitted p99 / unloaded p99",
    op: Op::AtMost,
    value: 2.0,
    unit: "x",
};

pub const RECOVERY_P99: Goal = Goal {
    name: "recovery: p99 after the burst / unloaded p99",
    op: Op::AtMost,
    value: 2.0,
    unit: "x",
};

pub const RECOVERY_ERRORS: Goal = Goal {
    name: "recovery: errors after the burst",
    op: Op::AtMost,
    value: 0.0,
    unit: "",
};

pub const ABUSE_GOOD_P99: Goal = Goal {
    name: "abuse: well-behaved p99 beside a 10x abuser / alone",
    op: Op::AtMost,
    value: 2.0,
    unit: "x",
};

pub const ABUSE_GOOD_ERRORS: Goal = Goal {
    name: "abuse: well-behaved errors beside the abuser",
    op: Op::AtMost,
    value: 0.0,
    unit: "",
};

/// Every target, in report order.
pub const ALL: &[&Goal] = &[
    &REDIS_NODE_THROUGHPUT,
    &REDIS_NODE_P50_ADDED_OPEN,
    &REDIS_NODE_P99_ADDED_OPEN,
    &REDIS_NODE_P50_ADDED_UNLOADED,
    &REDIS_NODE_P99_ADDED_UNLOADED,
    &ROUND_TRIPS_SESSION,
    &ROUND_TRIPS_SHARED,
    &SHARD_CEILING_LIGHT_LOAD,
    &SHARD_CEILING_SATURATED,
    &RSS_PER_IDLE_SESSION,
    &RSS_PER_POOLED_SESSION,
    &FLEET_ROUND_TRIPS_SESSION,
    &FLEET_ROUND_TRIPS_SHARED,
    &FLEET_SHARD_CEILING,
    &POOLED_VS_NONE_THROUGHPUT,
    &POOLED_VS_NONE_P50_LOWER,
    &OVERLOAD_NON_503,
    &OVERLOAD_ADMITTED_P99,
    &RECOVERY_P99,
    &RECOVERY_ERRORS,
    &ABUSE_GOOD_P99,
    &ABUSE_GOOD_ERRORS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_goal_is_named_once_and_takes_at_most_one_parameter() {
        let mut names: Vec<&str> = ALL.iter().map(|g| g.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "two goals share a name");
        for g in ALL {
            assert!(g.name.matches("{}").count() <= 1, "{}", g.name);
            assert!(g.value.is_finite(), "{}", g.name);
        }
    }
}
