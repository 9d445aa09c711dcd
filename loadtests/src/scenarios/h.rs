//! (h) session churn: sessions created and deleted per second; leak checks.

use super::*;

pub(super) async fn run(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    let dir = ctx.work.sub("h")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let redis = start_redis(&dir, "redis")?;
    let env = NodeEnv {
        database_url: ctx.pg_db("scenario_h")?,
        redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
        auth_required: false,
        extra: Vec::new(),
    };
    let node = start_node(&ctx.bins, &dir, "node", &env).await?;
    let admin = Admin::new(&node_base(&node), None)?;
    admin
        .create_server(
            "churn",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "session", 2_000, 1, 10),
        )
        .await?;
    let rate = ctx.pick(200.0, 50.0);
    res.setup = format!(
        "one node with Redis, session isolation (each client session binds its own upstream session, retired at DELETE); churn {rate} sessions/s, each initialize + initialized + one echo call + DELETE, open loop"
    );
    let cfg = LoadConfig {
        label: "churn".into(),
        urls: vec![admin.mcp_url("churn")],
        mode: Mode::Churn,
        churn_rate: rate,
        churn_calls: 1,
        warmup: ctx.secs(1.0, 0.1),
        duration: ctx.secs(15.0, 0.6),
        timeout: Duration::from_secs(30),
        ..LoadConfig::default()
    };
    let up0 = upstream_stats(&up).await?;
    let rss0 = node.rss_kib().unwrap_or(0);
    let run = measured_run(&cfg, &[&node, &up], Some(&redis)).await?;
    // Upstream sessions are closed in the background after the DELETE: give them a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss1 = node.rss_kib().unwrap_or(0);
    let up1 = upstream_stats(&up).await?;
    // The same churn again: growth that repeats is state left behind per session, growth that
    // does not is the allocator warming up.
    let mut again = cfg.clone();
    again.label = "churn-again".into();
    let run2 = measured_run(&again, &[&node, &up], Some(&redis)).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss2 = node.rss_kib().unwrap_or(0);
    let per = |a: u64, b: u64, n: u64| (b as f64 - a as f64) * 1024.0 / n.max(1) as f64;
    let second = per(rss1, rss2, run2.result.sessions.opened);
    if second > 32.0 {
        res.notes.push(format!(
            "The node's RSS still grew by {second:.0} bytes per session in the second churn phase (the first phase includes the allocator warming up), although every session was deleted and the pool is empty afterwards. A likely cause: `touched` in node/src/http/mcp/proxy.rs (when each binding key last had its idle TTL refreshed) gets an entry per client session on its first request and loses it only when a touch finds the binding gone, never on DELETE, so a node that serves churning sessions grows without bound."
        ));
    }
    let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let s = &run.result.sessions;
    res.figure(
        "sessions opened / closed",
        s.opened as f64,
        "",
        format!(
            "{} opened, {} closed, {} open failures, {} close failures",
            s.opened, s.closed, s.open_failed, s.close_failed
        ),
    );
    res.figure(
        "upstream sessions created / deleted",
        (get(&up1, "initializes") - get(&up0, "initializes")) as f64,
        "",
        format!(
            "{} created, {} deleted, {} still live at the upstream",
            get(&up1, "initializes") - get(&up0, "initializes"),
            get(&up1, "deletes") - get(&up0, "deletes"),
            get(&up1, "live_sessions")
        ),
    );
    res.figure(
        "session set-up p50",
        s.setup.p50_ms,
        "ms",
        format!("p99 {:.3} ms", s.setup.p99_ms),
    );
    res.figure(
        "DELETE p50",
        s.close.p50_ms,
        "ms",
        format!("p99 {:.3} ms", s.close.p99_ms),
    );
    res.figure(
        "whole lifecycle p99 (from its scheduled start)",
        s.lifecycle.p99_ms,
        "ms",
        format!("p50 {:.3} ms", s.lifecycle.p50_ms),
    );
    res.figure(
        "node RSS growth per churned session, first phase",
        per(rss0, rss1, s.opened),
        "bytes",
        format!("RSS {rss0} → {rss1} KiB over {} sessions", s.opened),
    );
    res.figure(
        "node RSS growth per churned session, second phase",
        per(rss1, rss2, run2.result.sessions.opened),
        "bytes",
        format!(
            "RSS {rss1} → {rss2} KiB over {} more sessions; the same growth in both phases means per-session state is left behind",
            run2.result.sessions.opened
        ),
    );
    if let Some(rc) = &run.redis {
        res.figure(
            "Redis round trips per session lifecycle",
            rc.round_trips_per_request,
            "",
            format!(
                "{} round trips / {} lifecycles: {:?}",
                rc.round_trips, rc.requests, rc.commands
            ),
        );
        res.figure(
            "Redis script µs per session lifecycle",
            rc.script_us_per_request,
            "µs",
            format!("ceiling {:.0} session lifecycles/s per pool", rc.ceiling_script_rps),
        );
    }
    if let Ok(stats) = admin.stats("churn").await {
        for k in ["total_sessions", "bindings", "leases", "reservations"] {
            if let Some(v) = stats.get(k).and_then(Value::as_f64) {
                res.figure(
                    &format!("pool {k} after the run"),
                    v,
                    "",
                    "expected 0: every session was deleted",
                );
            }
        }
    }
    res.runs.extend([run, run2]);
    let mut profile = cfg.clone();
    profile.label = "churn".into();
    ctx.profile(res, profile, &redis).await?;
    Ok(())
}
