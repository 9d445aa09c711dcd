//! (e) pooled vs `pool_strategy: none` with a 20 ms upstream handshake.

use super::*;

pub(super) async fn run(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("e")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream-20ms", 20, 0)?;
    let node = start_node(&ctx.bins, &dir, "node", &embedded_env(&dir, "node")).await?;
    let admin = Admin::new(&node_base(&node), None)?;
    let w = ctx.workers();
    // Room for a slot per worker plus one per client session: under `none` the slot each
    // concurrent shared-isolation initialize leases (before the node caches the initialize result)
    // stays idle for good and holds capacity (see the notes).
    let max = 2 * w as u32 + 1;
    admin
        .create_server(
            "pooled",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "shared", max, 1, 30),
        )
        .await?;
    admin
        .create_server("none", &[(upstream_url(&up), 1)], pool("none", "shared", max, 1, 30))
        .await?;
    res.setup = format!(
        "one embedded node; test upstream whose initialize costs 20 ms; shared isolation, max {max} slots of capacity 1; echo calls, closed loop {w} workers; pooled = round_robin over warm sessions, none = a new upstream session per call (what a gateway creating a session per call does); two servers on the same upstream, so neither run inherits the other's sessions"
    );
    res.notes.push(
        "Node finding: under `pool_strategy: none` an idle slot is never leased again and never retired, yet counts toward pool_max_size. Such slots come from shared-isolation `initialize` (each initialize that runs before the node has cached the upstream's initialize result leases a slot and releases it without retiring it: with N clients connecting at once, up to N slots), from warm-up (pool_min_size) and from any slot left when a pool is switched to `none`. With max = workers + 1 this scenario measured 39-42 req/s and p50 258-279 ms for `none` (16 of 17 slots idle and unusable, one reservation at a time); switching a pool that holds pool_max_size idle slots to `none` stalls every request until pool_timeout. The runs here give `none` max = 2 x workers + 1 and a server of its own.".into(),
    );
    let init0 = upstream_stats(&up).await.ok();
    let pooled = measured_run(
        &ctx.closed("pooled-round_robin", vec![admin.mcp_url("pooled")], w),
        &[&node, &up],
        None,
    )
    .await?;
    let init1 = upstream_stats(&up).await.ok();
    let none = measured_run(
        &ctx.closed("strategy-none", vec![admin.mcp_url("none")], w),
        &[&node, &up],
        None,
    )
    .await?;
    let init2 = upstream_stats(&up).await.ok();
    if let Ok(st) = admin.stats("none").await {
        let get = |k: &str| st.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        res.figure(
            "idle slots left in the none pool after its run (never leased, never retired)",
            get("available_sessions"),
            "",
            format!(
                "{} slots in the pool, max {max}; they hold capacity that `none` cannot use",
                get("total_sessions")
            ),
        );
    }
    let inits = |a: &Option<Value>, b: &Option<Value>| {
        let get = |v: &Option<Value>| v.as_ref().and_then(|v| v.get("initializes")?.as_u64()).unwrap_or(0);
        get(b).saturating_sub(get(a))
    };
    res.figure(
        "upstream sessions created per request, pooled (warm-up included)",
        inits(&init0, &init1) as f64 / pooled.result.all_requests.max(1) as f64,
        "",
        format!(
            "{} initializes for {} requests",
            inits(&init0, &init1),
            pooled.result.all_requests
        ),
    );
    res.figure(
        "upstream sessions created per request, none (warm-up included)",
        inits(&init1, &init2) as f64 / none.result.all_requests.max(1) as f64,
        "",
        format!(
            "{} initializes for {} requests",
            inits(&init1, &init2),
            none.result.all_requests
        ),
    );
    let ratio = pooled.result.throughput_rps / none.result.throughput_rps.max(1e-9);
    res.target(
        &goals::POOLED_VS_NONE_THROUGHPUT,
        ratio,
        format!(
            "pooled {:.0} req/s vs none {:.0} req/s",
            pooled.result.throughput_rps, none.result.throughput_rps
        ),
    );
    let lower = (1.0 - pooled.result.latency.p50_ms / none.result.latency.p50_ms.max(1e-9)) * 100.0;
    res.target(
        &goals::POOLED_VS_NONE_P50_LOWER,
        lower,
        format!(
            "pooled p50 {:.3} ms vs none p50 {:.3} ms",
            pooled.result.latency.p50_ms, none.result.latency.p50_ms
        ),
    );
    res.runs.extend([pooled, none]);
    Ok(())
}
