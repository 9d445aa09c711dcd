//! `test-upstream [--port N] [--handshake-ms N] [--latency-ms N] [--stateless 1] [--sse 1]
//! [--hostile 1]`: runs the test upstream MCP server on 127.0.0.1 until interrupted
//! (`--stateless 1`: the 2026-07-28 revision; `--sse 1`: answers as event streams, headers and
//! event in separate writes, as the SDK servers write them; `--hostile 1`: the hostile upstream
//! of `poolgate_loadtests::hostile` instead, which ignores the other options).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use poolgate_loadtests::hostile::Hostile;
use poolgate_loadtests::upstream::{Upstream, UpstreamConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (mut port, mut config, mut hostile) = (0u16, UpstreamConfig::default(), false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .context("a number")?;
        match flag.as_str() {
            "--port" => port = u16::try_from(value).context("--port out of range")?,
            "--handshake-ms" => config.handshake = Duration::from_millis(value),
            "--latency-ms" => config.latency = Duration::from_millis(value),
            "--stateless" => config.stateless = value != 0,
            "--sse" => config.sse = value != 0,
            "--hostile" => hostile = value != 0,
            other => bail!("unknown option {other}"),
        }
    }
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    if hostile {
        let hostile = Hostile::start_on(addr).await?;
        println!("{}", hostile.url());
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }
    let upstream = Upstream::start(addr, config).await?;
    println!("{}", upstream.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
