//! Control-plane benchmark: acquire + release through the Redis Lua scripts at concurrency 1,
//! 16 and 64, against pools of 64 and 10,000 slots, reported as a ratio to a no-op `EVALSHA`
//! measured on the same Redis in the same run; and Redis memory per slot, lease and binding.
//!
//! ```text
//! cargo run --release -p poolgate-loadtests --bin control-bench -- [--redis-url URL] [--ops N] [--out FILE]
//! ```
//! Without `--redis-url` it starts a private `redis-server` on a free loopback port and stops it
//! at the end. Every loop is bounded by `--ops` (default 20,000 calls per measurement).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fred::interfaces::ClientLike;
use fred::types::scripts::Script;
use fred::types::Value;
use poolgate_control::{
    AcquireRequest, Attempt, Committed, ControlPlane, Outcome, PoolSpec, RedisControlPlane, SlotMeta,
};
use poolgate_loadtests::launch;
use poolgate_shared::domain::pool::{Isolation, Strategy};
use poolgate_shared::domain::server::ServerId;

const LEVELS: [usize; 3] = [1, 16, 64];

struct Args {
    redis_url: Option<String>,
    ops: usize,
    out: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        redis_url: None,
        ops: 20_000,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--redis-url" => args.redis_url = Some(value),
            "--ops" => args.ops = value.parse().context("--ops must be a number")?,
            "--out" => args.out = Some(value),
            other => bail!("unknown option {other}"),
        }
    }
    if !(100..=1_000_000).contains(&args.ops) {
        bail!("--ops must be between 100 and 1000000");
    }
    Ok(args)
}

#[derive(Clone, Debug)]
struct Measure {
    concurrency: usize,
    calls: usize,
    calls_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

/// Runs `calls` calls of `op` split over `concurrency` tasks; latency per call in µs.
async fn measure<F, Fut>(concurrency: usize, calls: usize, op: F) -> anyhow::Result<Measure>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<usize>> + Send,
{
    let op = Arc::new(op);
    let per_task = calls / concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            let mut done = 0;
            while done < per_task {
                let t0 = Instant::now();
                let n = op(t).await?;
                let us = t0.elapsed().as_micros() as u64 / n.max(1) as u64;
                lat.extend(std::iter::repeat_n(us, n));
                done += n;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(calls);
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok(Measure {
        concurrency,
        calls: all.len(),
        calls_per_sec: all.len() as f64 / secs,
        p50_us: percentile(&all, 0.5),
        p99_us: percentile(&all, 0.99),
    })
}

fn spec(strategy: Strategy, isolation: Isolation, max: u32) -> PoolSpec {
    PoolSpec {
        strategy,
        isolation,
        max_size: max,
        capacity: 1,
        lease_ttl_ms: 600_000,
        idle_ttl_ms: 600_000,
        reservation_ttl_ms: 600_000,
        sticky_c_milli: 1250,
        endpoint_weights: vec![1],
        identity: None,
        fairness: Default::default(),
    }
}

/// Creates `n` idle slots in `pool` through reservations (warm-up path: acquire, commit, release).
async fn fill(cp: &ControlPlane, pool: &ServerId, n: usize) -> anyhow::Result<()> {
    let mut leases = Vec::with_capacity(n);
    for i in 0..n {
        match cp.try_acquire(pool, &AcquireRequest::new("bench", None)).await? {
            Attempt::Create(r) => match cp.commit(pool, &r.id, &format!("slot-{i}"), &bench_meta()).await? {
                Committed::Leased(l) => leases.push(l.id),
                Committed::Added(_) => {}
            },
            Attempt::Leased(l) => leases.push(l.id),
            Attempt::Wait { .. } => bail!("pool full while filling"),
        }
    }
    for id in leases {
        cp.release(pool, &id, Outcome::default()).await?;
    }
    Ok(())
}

async fn used_memory(client: &fred::clients::Client) -> anyhow::Result<i64> {
    let info: String = client.info(Some(fred::types::InfoKind::Memory)).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no used_memory in INFO")
}

/// Removes a directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    // Without --redis-url: a private redis-server in a temporary directory, both gone at exit.
    let dir = std::env::temp_dir().join(format!("poolgate-control-bench-{}", std::process::id()));
    // Declared first, dropped last: after the Redis process is gone.
    let _cleanup = RemoveOnDrop(dir.clone());
    let (_private, url) = match &args.redis_url {
        Some(u) => (None, u.clone()),
        None => {
            std::fs::create_dir_all(&dir)?;
            let p = launch::start_redis(&dir, "redis")?;
            let url = format!("redis://127.0.0.1:{}", p.port);
            (Some(p), url)
        }
    };
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
    let redis = Arc::new(RedisControlPlane::connect(&url, &prefix)?);
    let cp = ControlPlane::Redis(redis.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while cp.ping().await.is_err() {
        if Instant::now() > deadline {
            bail!("cannot reach {url}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = redis.client().clone();
    let noop = Script::from_lua("return 1");
    noop.load(&client).await?;

    let mut rows: Vec<(Measure, Measure, f64, usize)> = Vec::new();
    for slots in [64usize, 10_000] {
        let pool = ServerId::parse(&format!("bench-{slots}"))?;
        cp.sync(
            &pool,
            &spec(Strategy::LeastConnections, Isolation::Shared, slots as u32),
        )
        .await?;
        fill(&cp, &pool, slots).await?;
        for &c in &LEVELS {
            let client = client.clone();
            let noop_script = noop.clone();
            let base = measure(c, args.ops, move |_| {
                let (client, s) = (client.clone(), noop_script.clone());
                async move {
                    let _: Value = s.evalsha(&client, Vec::<String>::new(), Vec::<String>::new()).await?;
                    Ok(1)
                }
            })
            .await?;
            let (cp2, pool2) = (cp.clone(), pool.clone());
            let ours = measure(c, args.ops, move |t| {
                let (cp, pool) = (cp2.clone(), pool2.clone());
                async move {
                    let req = AcquireRequest::new(&format!("bench-{t}"), None);
                    match cp.try_acquire(&pool, &req).await? {
                        Attempt::Leased(l) => {
                            cp.release(
                                &pool,
                                &l.id,
                                Outcome {
                                    latency_ms: Some(1),
                                    ..Default::default()
                                },
                            )
                            .await?;
                            Ok(2)
                        }
                        other => bail!("unexpected {other:?}"),
                    }
                }
            })
            .await?;
            let ratio = ours.calls_per_sec / base.calls_per_sec;
            println!(
                "slots={slots:>5} c={c:>2}  noop {:>8.0} calls/s p50 {:>5.0}µs p99 {:>5.0}µs | acquire+release {:>8.0} calls/s p50 {:>5.0}µs p99 {:>5.0}µs | ratio {ratio:.2}",
                base.calls_per_sec, base.p50_us, base.p99_us, ours.calls_per_sec, ours.p50_us, ours.p99_us
            );
            rows.push((base, ours, ratio, slots));
        }
    }

    // Memory per slot, lease and binding (session isolation: one binding per slot).
    let mem_pool = ServerId::parse("bench-mem")?;
    let n = 10_000usize;
    cp.sync(&mem_pool, &spec(Strategy::RoundRobin, Isolation::Session, n as u32))
        .await?;
    let m0 = used_memory(&client).await?;
    fill(&cp, &mem_pool, n).await?;
    let m1 = used_memory(&client).await?;
    let mut leases = Vec::with_capacity(n);
    for i in 0..n {
        let req = AcquireRequest::new("bench", Some(&format!("user:bench-mem:session-{i:06}")));
        match cp.try_acquire(&mem_pool, &req).await? {
            Attempt::Leased(l) => leases.push(l.id),
            other => bail!("unexpected {other:?}"),
        }
    }
    let m2 = used_memory(&client).await?;
    for id in &leases {
        cp.release(&mem_pool, id, Outcome::default()).await?;
    }
    let m3 = used_memory(&client).await?;
    let per_slot = (m1 - m0) as f64 / n as f64;
    let per_lease_and_binding = (m2 - m1) as f64 / n as f64;
    let per_binding = (m3 - m1) as f64 / n as f64;
    let per_lease = per_lease_and_binding - per_binding;
    println!("memory: {per_slot:.0} B/slot, {per_lease:.0} B/lease, {per_binding:.0} B/binding (n={n})");

    let json = serde_json::json!({
        "redis_url": url.split('@').next_back(),
        "ops_per_measurement": args.ops,
        "rows": rows.iter().map(|(b, o, r, slots)| serde_json::json!({
            "slots": slots, "concurrency": o.concurrency,
            "noop_calls_per_sec": b.calls_per_sec, "noop_p50_us": b.p50_us, "noop_p99_us": b.p99_us,
            "calls_per_sec": o.calls_per_sec, "p50_us": o.p50_us, "p99_us": o.p99_us, "calls": o.calls,
            "ratio_to_noop": r,
        })).collect::<Vec<_>>(),
        "memory_bytes": {"per_slot": per_slot, "per_lease": per_lease, "per_binding": per_binding, "n": n},
    });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&json)?).with_context(|| format!("cannot write {out}"))?;
    }
    cp.close().await;
    let _ = client.quit().await;
    Ok(())
}

/// A slot's metadata as a real upstream session has it: session id, endpoint, protocol version
/// and the cached `initialize` result (`POOLGATE_BENCH_INIT_BYTES` bytes of it, default 0 as in the recorded results), so
/// the scripts pack and unpack records of a realistic size. 0 = empty metadata.
fn bench_meta() -> SlotMeta {
    let bytes: usize = std::env::var("POOLGATE_BENCH_INIT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if bytes == 0 {
        return SlotMeta::default();
    }
    SlotMeta {
        session_id: Some(uuid::Uuid::new_v4().to_string()),
        protocol_version: Some("2025-11-25".into()),
        endpoint: Some("http://127.0.0.1:3001/mcp".into()),
        init: Some(format!("{{\"serverInfo\":{{\"name\":\"{}\"}}}}", "x".repeat(bytes))),
    }
}
