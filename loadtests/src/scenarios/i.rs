//! (i) one abusive user at 10× the pool's capacity beside well-behaved users: the well-behaved
//! users' p99 and errors with and without the abuser, measured in the same scenario.

use super::*;

pub(super) async fn run(ctx: &mut Ctx, res: &mut ScenarioResult) -> anyhow::Result<()> {
    use poolgate_shared::auth::{Claims, JwtKey};
    let dir = ctx.work.sub("i")?;
    let up = start_upstream(&ctx.bins, &dir, "upstream", 0, 0)?;
    // Users are told apart by their tokens: auth on.
    let mut env = embedded_env(&dir, "node");
    env.auth_required = true;
    let node = start_node(&ctx.bins, &dir, "node", &env).await?;
    let key = JwtKey::new(crate::launch::JWT_SECRET.as_bytes());
    let exp = poolgate_shared::auth::now_unix() + 4 * 3600;
    let mint = |sub: &str, roles: Vec<String>| {
        key.mint(&Claims {
            sub: sub.to_owned(),
            exp,
            iat: None,
            nbf: None,
            roles,
            permissions: Vec::new(),
        })
    };
    let admin = Admin::new(&node_base(&node), Some(mint("loadtests-admin", vec!["admin".into()])))?;
    let (max, call_ms) = (8u32, 20.0);
    // The defaults under test: per-user quotas `auto` (half the pool), no rate limit.
    let mut fields = pool("least_connections", "shared", max, 1, 5);
    fields["pool_max_sessions_per_user"] = json!("auto");
    fields["pool_max_inflight_per_user"] = json!("auto");
    admin.create_server("i", &[(upstream_url(&up), 1)], fields).await?;
    let url = admin.mcp_url("i");
    let capacity = f64::from(max) * 1000.0 / call_ms;
    let users = 4usize;
    let good_tokens: Vec<String> = (0..users).map(|i| mint(&format!("user-{i}"), Vec::new())).collect();
    let good_rate = ctx.pick(capacity * 0.3, capacity * 0.1);
    let abuse_rate = ctx.pick(capacity * 10.0, capacity * 2.0);
    res.setup = format!(
        "one embedded node, auth on; shared isolation, max {max} slots of capacity 1, default per-user quotas (auto: at most {} in flight per user); slow tool fixed {call_ms} ms, so the pool serves {capacity:.0} req/s; {users} well-behaved users at {good_rate:.0} req/s in all, alone and then beside one user sending {abuse_rate:.0} req/s (10x the pool's capacity)",
        max.div_ceil(2)
    );
    let load = |label: &str, tokens: Vec<String>, rate: f64, sessions: usize| LoadConfig {
        label: label.to_owned(),
        urls: vec![url.clone()],
        tokens,
        mode: Mode::Open { rate, sessions },
        warmup: ctx.secs(1.0, 0.2),
        duration: ctx.secs(8.0, 1.0),
        mix: Mix::only(Op::Slow),
        slow: Dist::Fixed(call_ms),
        timeout: Duration::from_secs(15),
        max_in_flight: 20_000,
        ..LoadConfig::default()
    };
    let alone = measured_run(
        &load("well-behaved alone", good_tokens.clone(), good_rate, users),
        &[&node, &up],
        None,
    )
    .await?;
    // The abuser starts first and runs past the end of the measured window.
    let mut abuse_cfg = load("abuser", vec![mint("abuser", Vec::new())], abuse_rate, 16);
    abuse_cfg.warmup = Duration::ZERO;
    abuse_cfg.duration = ctx.secs(10.0, 1.6);
    let abuser = tokio::spawn(async move { crate::loadgen::run(&abuse_cfg, None).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let beside = measured_run(
        &load("well-behaved beside the abuser", good_tokens, good_rate, users),
        &[&node, &up],
        None,
    )
    .await?;
    let abuse = abuser
        .await
        .map_err(|e| anyhow::anyhow!("abuser task: {e}"))?
        .map_err(|e| anyhow::anyhow!("abuser load: {e}"))?;
    res.target(
        &goals::ABUSE_GOOD_P99,
        beside.result.latency.p99_ms / alone.result.latency.p99_ms.max(1e-9),
        format!(
            "well-behaved p99 {:.1} ms beside the abuser vs {:.1} ms alone",
            beside.result.latency.p99_ms, alone.result.latency.p99_ms
        ),
    );
    res.target(
        &goals::ABUSE_GOOD_ERRORS,
        beside.result.errors as f64,
        format!(
            "{} well-behaved requests beside the abuser, kinds {:?}",
            beside.result.requests, beside.result.errors_by_kind
        ),
    );
    res.figure(
        "abuser's requests admitted",
        abuse.throughput_rps,
        "req/s",
        format!(
            "of {:.0} req/s sent; {} requests, {} refused (kinds {:?})",
            abuse_rate, abuse.requests, abuse.errors, abuse.errors_by_kind
        ),
    );
    res.runs.extend([alone, beside]);
    Ok(())
}
