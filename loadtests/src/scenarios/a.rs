//! (a) direct to the test upstream: the data-path limit (closed loop) and latency at a fixed rate (open loop) — the baseline of every other scenario.

use super::*;

pub(super) async fn run(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("a")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let url = upstream_url(&up);
    res.setup = format!(
        "test upstream (no handshake or call latency); echo calls; closed loop {} workers; open loop {} req/s",
        ctx.workers(),
        ctx.latency_rate()
    );
    let c = measured_run(
        &ctx.closed("direct-closed", vec![url.clone()], ctx.workers()),
        &[&up],
        None,
    )
    .await?;
    let o = measured_run(
        &ctx.open("direct-open", vec![url.clone()], ctx.latency_rate(), ctx.workers()),
        &[&up],
        None,
    )
    .await?;
    let c1 = measured_run(&ctx.closed("direct-closed-1", vec![url], 1), &[&up], None).await?;
    res.figure(
        "data-path limit (closed loop)",
        c.result.throughput_rps,
        "req/s",
        format!("{} workers", ctx.workers()),
    );
    res.figure("unloaded p50 (1 worker)", c1.result.latency.p50_ms, "ms", "");
    res.runs.extend([c, o, c1]);
    Ok(())
}
