//! (f) each strategy under uniform and heavy-tailed durations and with heterogeneous endpoints: p99, per-slot skew.

use super::*;

pub(super) async fn run(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    use poolgate_shared::auth::{Claims, JwtKey};
    let dir = ctx.work.sub("f")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    let fast = start_upstream(&ctx.bins, &dir, "upstream-2ms", 0, 2)?;
    let slow = start_upstream(&ctx.bins, &dir, "upstream-6ms", 0, 6)?;
    // Distinct users (sticky binds per user): auth on, one token per client session.
    let mut env = embedded_env(&dir, "node");
    env.auth_required = true;
    let node = start_node(&ctx.bins, &dir, "node", &env).await?;
    let key = JwtKey::new(crate::launch::JWT_SECRET.as_bytes());
    let exp = poolgate_shared::auth::now_unix() + 4 * 3600;
    let mint = |sub: String, roles: Vec<String>| {
        key.mint(&Claims {
            sub,
            exp,
            iat: None,
            nbf: None,
            roles,
            permissions: Vec::new(),
        })
    };
    let admin = Admin::new(
        &node_base(&node),
        Some(mint("loadtests-admin".into(), vec!["admin".into()])),
    )?;
    let (max, cap) = (8u32, 1u32);
    admin
        .create_server(
            "uni",
            &[(upstream_url(&up), 1)],
            pool("round_robin", "shared", max, cap, 30),
        )
        .await?;
    admin
        .create_server(
            "het",
            &[(upstream_url(&fast), 1), (upstream_url(&slow), 1)],
            pool("round_robin", "shared", max, cap, 30),
        )
        .await?;
    let users = ctx.pick(16, 4);
    let tokens: Vec<String> = (0..users).map(|i| mint(format!("user-{i}"), Vec::new())).collect();
    res.setup = format!(
        "one embedded node, auth on with {users} distinct users (sticky binds per user); shared isolation, max {max} slots of capacity {cap}; open loop at about 60 % of the pool's capacity; uniform = slow tool uniform 5-15 ms, heavy = Pareto(scale 3 ms, alpha 1.5) capped at 1 s, hetero = echo on two endpoints (2 ms and 6 ms per call); the pool is reset before each run so per-slot use is that run's"
    );
    let conditions: [(&str, &str, Op, Dist, f64); 3] = [
        ("uniform", "uni", Op::Slow, Dist::Uniform(5.0, 15.0), 480.0),
        ("heavy", "uni", Op::Slow, Dist::Pareto(3.0, 1.5), 530.0),
        ("hetero", "het", Op::Echo, Dist::Fixed(0.0), 1200.0),
    ];
    let strategies = ["round_robin", "least_connections", "sticky", "weighted"];
    for (cond, server, op, dist, rate) in conditions.clone() {
        let url = admin.mcp_url(server);
        for strategy in strategies {
            admin.pool_config(server, json!({"pool_strategy": strategy})).await?;
            admin.reset(server).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let label = format!("{cond}-{strategy}");
            let cfg = LoadConfig {
                label: label.clone(),
                urls: vec![url.clone()],
                tokens: tokens.clone(),
                mode: Mode::Open {
                    rate: ctx.pick(rate, rate / 4.0),
                    sessions: users,
                },
                warmup: ctx.secs(1.0, 0.1),
                duration: ctx.secs(8.0, 0.25),
                mix: Mix::only(op),
                slow: dist.clone(),
                slow_cap_ms: 1000,
                timeout: Duration::from_secs(30),
                ..LoadConfig::default()
            };
            let run = measured_run(&cfg, &[&node, &up, &fast, &slow], None).await?;
            let slots = admin.sessions(server).await?;
            res.utilization.push(Utilization::of(&label, slots));
            res.runs.push(run);
        }
    }
    // p99 against round_robin under the same condition.
    for (cond, ..) in &conditions {
        let base = res
            .run(&format!("{cond}-round_robin"))
            .map(|r| r.result.latency.p99_ms)
            .unwrap_or(0.0);
        for strategy in strategies {
            let label = format!("{cond}-{strategy}");
            let (p99, skew) = (
                res.run(&label).map(|r| r.result.latency.p99_ms).unwrap_or(0.0),
                res.utilization
                    .iter()
                    .find(|u| u.label == label)
                    .map(|u| u.skew_max_over_mean)
                    .unwrap_or(0.0),
            );
            res.figure(
                &format!("{label}: p99 vs round_robin"),
                p99 / base.max(1e-9),
                "x",
                format!("{p99:.3} vs {base:.3} ms; slot skew max/mean {skew:.2}"),
            );
        }
    }
    let sticky_worst = res
        .figures
        .iter()
        .filter(|f| f.name.contains("-sticky:"))
        .map(|f| f.value)
        .fold(0.0f64, f64::max);
    let collapsed: Vec<String> = res
        .runs
        .iter()
        .filter(|r| {
            r.result
                .rate_rps
                .is_some_and(|rate| r.result.throughput_rps < 0.95 * rate)
        })
        .map(|r| {
            let node_cpu = r
                .cpu
                .iter()
                .find(|c| c.process == "node")
                .map_or(0.0, |c| c.us_per_request);
            format!(
                "{} ({:.0} of {:.0} req/s, p99 {:.0} ms, node {:.0} µs CPU per request)",
                r.result.label,
                r.result.throughput_rps,
                r.result.rate_rps.unwrap_or(0.0),
                r.result.latency.p99_ms,
                node_cpu
            )
        })
        .collect();
    if !collapsed.is_empty() {
        res.notes.push(format!(
            "Runs that fell behind an offered load of about 60 % of the pool's capacity: {}. Once requests wait for a slot, every release wakes every waiting acquire on the node and each re-runs the acquire script, so the node's CPU per request climbs with the number of waiters and a transient queue can feed itself; compare the node's CPU per request with the round_robin run of the same condition.",
            collapsed.join("; ")
        ));
    }
    if sticky_worst > 2.0 {
        res.notes.push(format!(
            "sticky's p99 reaches {sticky_worst:.1}x round_robin's: a user's request waits for the slot the user is bound to while it is at capacity, even when other slots are idle (acquire answers W for a busy bound slot; no overflow to another slot). With capacity 1 and two users per slot, one long call (heavy tail) or a slot on the slow endpoint (heterogeneous) queues the other user's requests; with heterogeneous endpoints the queue on slow-endpoint slots grows for the whole run (throughput below the offered rate)."
        ));
    }
    Ok(())
}
