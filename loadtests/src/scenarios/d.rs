//! (d) three nodes, one Redis, clients spread over the nodes: fleet scaling.

use super::*;

pub(super) async fn run(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("d")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let redis = start_redis(&dir, "redis")?;
    let db = ctx.pg_db("scenario_d")?;
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let env = NodeEnv {
            database_url: db.clone(),
            redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
            auth_required: false,
            extra: Vec::new(),
        };
        nodes.push(start_node(&ctx.bins, &dir, &format!("node{i}"), &env).await?);
    }
    let admin = Admin::new(&node_base(&nodes[0]), None)?;
    admin
        .create_server(
            "echo",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "session", 10_000, 1, 10),
        )
        .await?;
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}/servers/echo/mcp", node_base(n)))
        .collect();
    let w = ctx.workers();
    let rate = ctx.latency_rate();
    res.setup = format!(
        "three nodes on one Redis and one PostgreSQL, session isolation; workers and sessions spread round-robin over the nodes; closed loop {w} workers, open loop {rate} req/s; all processes share the machine's cores"
    );
    let mut watched: Vec<&Proc> = nodes.iter().collect();
    watched.push(&up);
    let dc = measured_run(&ctx.closed("direct-closed", vec![upstream_url(&up)], w), &[&up], None).await?;
    let one = measured_run(
        &ctx.closed("node1-only-closed", vec![urls[0].clone()], w),
        &[&nodes[0], &up],
        Some(&redis),
    )
    .await?;
    let fleet = measured_run(&ctx.closed("fleet-closed", urls.clone(), w), &watched, Some(&redis)).await?;
    let dopen = measured_run(&ctx.open("direct-open", vec![upstream_url(&up)], rate, w), &[&up], None).await?;
    let fopen = measured_run(&ctx.open("fleet-open", urls.clone(), rate, w), &watched, Some(&redis)).await?;
    compare(res, "fleet closed loop", &fleet, &dc);
    compare(res, &format!("fleet open loop {rate} req/s"), &fopen, &dopen);
    res.figure(
        "3 nodes / 1 node throughput (same machine)",
        fleet.result.throughput_rps / one.result.throughput_rps.max(1e-9),
        "x",
        format!(
            "{:.0} vs {:.0} req/s; on one 2-core machine the nodes compete for the same cores",
            fleet.result.throughput_rps, one.result.throughput_rps
        ),
    );
    if let Some(rc) = &fleet.redis {
        res.target_round_trips(&goals::FLEET_ROUND_TRIPS_SESSION, rc);
    }
    // Shared isolation on the fleet: the binding case for the shard ceiling.
    // Through every node, so each one drops its cached server definition at once.
    for n in &nodes {
        Admin::new(&node_base(n), None)?
            .pool_config("echo", json!({"pool_isolation": "shared", "pool_max_size": 2 * w}))
            .await?;
    }
    for u in &urls {
        ctx.warm(u, w).await?;
    }
    let fs = measured_run(
        &ctx.closed("fleet-closed-shared", urls.clone(), w),
        &watched,
        Some(&redis),
    )
    .await?;
    if let Some(rc) = &fs.redis {
        res.target_round_trips(&goals::FLEET_ROUND_TRIPS_SHARED, rc);
        res.target_ceiling(&goals::FLEET_SHARD_CEILING, rc);
    }
    res.runs.extend([dc, one, fleet, dopen, fopen, fs]);
    Ok(())
}
