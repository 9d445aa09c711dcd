//! (b) one node, embedded (SQLite, in-process control plane) and (c) one node with Redis + PostgreSQL: the same single-node measurements (throughput and added latency against direct, Redis cost per request, RSS per session).

use super::*;

/// (b) embedded and (c) Redis: the same single-node measurements.
pub(super) async fn run(ctx: &mut Ctx, res: &mut ScenarioResult, with_redis: bool) -> anyhow::Result<()> {
    let id = res.id.clone();
    let dir = ctx.work.sub(&id)?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let redis = if with_redis {
        Some(start_redis(&dir, "redis")?)
    } else {
        None
    };
    let env = match &redis {
        Some(r) => NodeEnv {
            database_url: ctx.pg_db(&format!("scenario_{id}"))?,
            redis_url: Some(format!("redis://127.0.0.1:{}", r.port)),
            auth_required: false,
            extra: Vec::new(),
        },
        None => embedded_env(&dir, "node"),
    };
    let node = start_node(&ctx.bins, &dir, "node", &env).await?;
    let admin = Admin::new(&node_base(&node), None)?;
    admin
        .create_server(
            "echo",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "session", 10_000, 1, 10),
        )
        .await?;
    let (direct, gw) = (upstream_url(&up), admin.mcp_url("echo"));
    let mode = if with_redis {
        "distributed (Redis + PostgreSQL)"
    } else {
        "embedded (SQLite, in-process control plane)"
    };
    res.setup = format!(
        "one node, {mode}; test upstream without latency; pool round_robin, session isolation, max 10000; echo calls; closed loop {w} workers, open loop {r} req/s; each gateway run follows a direct run on the same upstream",
        w = ctx.workers(),
        r = ctx.latency_rate()
    );
    let w = ctx.workers();
    let rate = ctx.latency_rate();
    let redis_ref = redis.as_ref();
    let dc = measured_run(&ctx.closed("direct-closed", vec![direct.clone()], w), &[&up], None).await?;
    let nc = measured_run(
        &ctx.closed("node-closed", vec![gw.clone()], w),
        &[&node, &up],
        redis_ref,
    )
    .await?;
    let dopen = measured_run(&ctx.open("direct-open", vec![direct.clone()], rate, w), &[&up], None).await?;
    let nopen = measured_run(
        &ctx.open("node-open", vec![gw.clone()], rate, w),
        &[&node, &up],
        redis_ref,
    )
    .await?;
    // Unloaded: one worker, one request at a time (no queueing anywhere).
    let mut one = ctx.closed("direct-closed-1", vec![direct.clone()], 1);
    one.duration = ctx.secs(8.0, 0.3);
    let d1 = measured_run(&one, &[&up], None).await?;
    one.label = "node-closed-1".into();
    one.urls = vec![gw.clone()];
    let n1 = measured_run(&one, &[&node, &up], redis_ref).await?;
    compare(res, "closed loop", &nc, &dc);
    compare(res, &format!("open loop {rate} req/s"), &nopen, &dopen);
    compare(res, "unloaded (1 worker)", &n1, &d1);
    if with_redis {
        let base = format!(
            "direct to the upstream in the same scenario: {:.0} req/s",
            dc.result.throughput_rps
        );
        res.target(
            &goals::REDIS_NODE_THROUGHPUT,
            nc.result.throughput_rps / dc.result.throughput_rps.max(1e-9),
            base,
        );
        res.target_with(
            &goals::REDIS_NODE_P50_ADDED_OPEN,
            &rate.to_string(),
            nopen.result.latency.p50_ms - dopen.result.latency.p50_ms,
            format!("direct p50 {:.3} ms", dopen.result.latency.p50_ms),
        );
        res.target_with(
            &goals::REDIS_NODE_P99_ADDED_OPEN,
            &rate.to_string(),
            nopen.result.latency.p99_ms - dopen.result.latency.p99_ms,
            format!("direct p99 {:.3} ms", dopen.result.latency.p99_ms),
        );
        res.target(
            &goals::REDIS_NODE_P50_ADDED_UNLOADED,
            n1.result.latency.p50_ms - d1.result.latency.p50_ms,
            format!("direct p50 {:.3} ms", d1.result.latency.p50_ms),
        );
        res.target(
            &goals::REDIS_NODE_P99_ADDED_UNLOADED,
            n1.result.latency.p99_ms - d1.result.latency.p99_ms,
            format!("direct p99 {:.3} ms", d1.result.latency.p99_ms),
        );
        if let Some(rc) = &nc.redis {
            res.target_round_trips(&goals::ROUND_TRIPS_SESSION, rc);
        }
    }
    res.runs.extend([dc, nc, dopen, nopen, d1, n1]);
    if let Some(r) = &redis {
        ctx.profile(res, ctx.closed("session", vec![gw.clone()], w), r).await?;
    }

    // Shared isolation: two control-plane calls per request (acquire + release). Twice as many
    // slots as workers: a worker's next acquire can overtake its previous release (released in
    // the background), and waiting for a slot would add calls that are not the steady state.
    admin
        .pool_config("echo", json!({"pool_isolation": "shared", "pool_max_size": 2 * w}))
        .await?;
    ctx.warm(&gw, w).await?;
    let ns = measured_run(
        &ctx.closed("node-closed-shared", vec![gw.clone()], w),
        &[&node, &up],
        redis_ref,
    )
    .await?;
    let dc = res.run("direct-closed").map(|r| r.result.throughput_rps).unwrap_or(0.0);
    res.figure(
        "shared isolation: throughput / direct",
        ns.result.throughput_rps / dc.max(1e-9),
        "x",
        format!("{:.0} vs {:.0} req/s", ns.result.throughput_rps, dc),
    );
    if let Some(rc) = &ns.redis {
        res.target_round_trips(&goals::ROUND_TRIPS_SHARED, rc);
        res.target_ceiling(&goals::SHARD_CEILING_LIGHT_LOAD, rc);
        res.figure(
            "shard ceiling counting all Redis main-thread CPU (shared isolation)",
            rc.ceiling_cpu_rps,
            "req/s",
            format!("{:.2} µs Redis CPU per request", rc.cpu_us_per_request),
        );
    }
    res.runs.push(ns);
    if let Some(r) = &redis {
        ctx.profile(res, ctx.closed("shared", vec![gw.clone()], w), r).await?;
        // Bounded by the control plane's own call timeout; one retry: on this shared machine a
        // build can stall a call past it. A failure here is reported, not fatal.
        let mut sat = saturated_cost(r.port, ctx.pick(200_000, 2_000), 64).await;
        if sat.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sat = saturated_cost(r.port, ctx.pick(200_000, 2_000), 64).await;
        }
        match sat {
            Err(e) => res
                .notes
                .push(format!("The saturated control-plane measurement failed twice: {e:#}")),
            Ok(sat) => {
                res.target(&goals::SHARD_CEILING_SATURATED, sat.ceiling_script_rps, format!(
                        "{:.2} µs of scripts per request; {:.0} pairs/s driven at concurrency {}; counting Redis main-thread CPU {:.2} µs → {:.0} req/s",
                        sat.script_us_per_pair, sat.pairs_per_s, sat.concurrency, sat.cpu_us_per_pair, sat.ceiling_cpu_rps
                    ));
                let (port, lua, n) = (r.port, lua_dir(), ctx.pick(20_000, 2_000));
                let pre = tokio::task::spawn_blocking(move || prelude_cost(port, &lua, n)).await??;
                res.figure(
                    "EVALSHA of `return 1`, hot (pipelined)",
                    pre.bare_us,
                    "µs",
                    format!("{} calls", pre.calls),
                );
                res.figure(
                    "EVALSHA of the prelude + `return 1` with 13 keys, hot (pipelined)",
                    pre.prelude_us,
                    "µs",
                    format!(
                        "every pool script pays this before its own work: 2 x {:.2} = {:.0} % of the {:.2} µs an acquire + release pair costs at saturation",
                        pre.prelude_us,
                        200.0 * pre.prelude_us / sat.script_us_per_pair.max(1e-9),
                        sat.script_us_per_pair
                    ),
                );
                res.saturated = Some(sat);
            }
        }
    }

    // Memory: idle client sessions (shared isolation: no upstream session each), then client
    // sessions each holding a pooled upstream session (session isolation).
    let n = ctx.memory_sessions();
    let limit = ctx.secs(180.0, 30.0);
    let idle = idle_sessions_rss("idle client sessions (shared isolation)", &node, &up, &gw, n, limit).await?;
    admin
        .pool_config("echo", json!({"pool_isolation": "session", "pool_max_size": 10_000}))
        .await?;
    let pooled = idle_sessions_rss(
        "client sessions each bound to a pooled upstream session (session isolation)",
        &node,
        &up,
        &gw,
        n,
        limit,
    )
    .await?;
    let where_ = if with_redis { "with Redis" } else { "embedded" };
    res.target_with(
        &goals::RSS_PER_IDLE_SESSION,
        where_,
        idle.kib_per_session,
        format!(
            "RSS {} → {} KiB over {} sessions",
            idle.rss_before_kib, idle.rss_after_kib, idle.sessions
        ),
    );
    res.target_with(
        &goals::RSS_PER_POOLED_SESSION,
        where_,
        pooled.kib_per_session,
        format!(
            "RSS {} → {} KiB over {} sessions, {} upstream sessions created",
            pooled.rss_before_kib, pooled.rss_after_kib, pooled.sessions, pooled.upstream_sessions
        ),
    );
    if let Some(r) = &redis {
        if let Ok(info) = crate::launch::redis_command(r.port, &["INFO", "memory"]) {
            if let Some(v) = info
                .lines()
                .find_map(|l| l.trim().strip_prefix("used_memory:"))
                .and_then(|v| v.parse::<f64>().ok())
            {
                res.figure("Redis used_memory at the end", v / 1024.0, "KiB", "");
            }
        }
    }
    res.memory.extend([idle, pooled]);
    Ok(())
}
