//! The Redis control plane (fred client: standalone, Sentinel or Cluster from the URL scheme).
//!
//! Every pool change is one Lua script (`lua/*.lua`, each prefixed with `lua/prelude.lua`),
//! loaded once and called by SHA with a reload on NOSCRIPT (a Sentinel failover or a restart
//! empties the script cache; in Cluster the load goes to every primary). The client reconnects
//! forever with capped backoff and every call is bounded by [`CALL_TIMEOUT`], so Redis being down
//! turns into fast [`ControlError::Unavailable`] errors, never hangs. All scripts are idempotent
//! (by lease, reservation or binding id), so fred re-sending a command after a reconnect is safe.
//!
//! # Layout
//! - `mod.rs`: [`RedisControlPlane`]: the clients, the bounded call, script evaluation, pub/sub
//!   wake-ups of waiters.
//! - `reply.rs`: decoding replies into typed results.
//! - Each operation's arguments and reply are in `control/ops/<op>.rs`, beside its embedded twin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{EventInterface, PubsubInterface, SetsInterface};
use fred::prelude::{Builder, ClientLike, Config as FredConfig, Error as FredError, ReconnectPolicy};
use fred::types::scripts::Script;
use fred::types::Value;
use tokio::sync::watch;

pub(crate) mod reply;

use super::keys::{registry_key, PoolKeys};
use super::{ControlError, CALL_TIMEOUT};
use poolgate_shared::domain::server::ServerId;
use reply::{classify, items};

/// Time to establish one connection before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff: from 100 ms doubling up to 2 s, retrying forever (0 = unlimited).
const RECONNECT_MIN_MS: u32 = 100;
const RECONNECT_MAX_MS: u32 = 2_000;

const PRELUDE: &str = include_str!("../lua/prelude.lua");

/// A pool script: the prelude (shared helpers, the KEYS layout) then the operation's own file.
/// Each operation in `control/ops/` keeps its script in a `LazyLock` built with this; the SHA is
/// computed locally and the body is sent only on NOSCRIPT.
pub(crate) fn pool_script(body: &str) -> Script {
    Script::from_lua(format!("{PRELUDE}\n{body}"))
}

/// How the Redis clients connect (`REDIS_POOL_SIZE`, `REDIS_POOL_TIMEOUT`,
/// `REDIS_SOCKET_KEEPALIVE`).
#[derive(Clone, Copy, Debug)]
pub struct RedisOptions {
    /// Connections for commands (each multiplexed; calls are spread round-robin), plus the one
    /// pub/sub connection.
    pub pool_size: usize,
    /// Bound on every call.
    pub call_timeout: Duration,
    /// TCP keepalive probes on the connections (idle time before the first probe).
    pub keepalive: Option<Duration>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            pool_size: 1,
            call_timeout: CALL_TIMEOUT,
            keepalive: None,
        }
    }
}

/// Redis-backed control plane.
pub struct RedisControlPlane {
    clients: Vec<Client>,
    next: std::sync::atomic::AtomicUsize,
    call_timeout: Duration,
    subscriber: SubscriberClient,
    pub(crate) prefix: String,
    /// Channel → notifier of local waiters.
    watchers: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl std::fmt::Debug for RedisControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisControlPlane")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisControlPlane {
    /// Builds the clients (default options) and starts connecting in the background.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, ControlError> {
        Self::connect_with(url, prefix, RedisOptions::default())
    }

    /// Builds the clients and starts connecting in the background.
    pub fn connect_with(url: &str, prefix: &str, options: RedisOptions) -> Result<Self, ControlError> {
        let call_timeout = options.call_timeout;
        let mut config = FredConfig::from_url(url).map_err(|e| ControlError::Config(e.to_string()))?;
        // Apply the reconnect policy to the first connection too: a node started while Redis is
        // down must connect once it comes up (fred's default gives up on a failed first attempt).
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = call_timeout;
                c.tcp.nodelay = Some(true);
                c.tcp.keepalive = options
                    .keepalive
                    .map(|idle| socket2::TcpKeepalive::new().with_time(idle).with_interval(idle));
            })
            .with_performance_config(|p| {
                p.default_command_timeout = call_timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_MS,
                RECONNECT_MAX_MS,
                2,
            ));
        let mut clients = Vec::with_capacity(options.pool_size.max(1));
        for _ in 0..options.pool_size.max(1) {
            clients.push(builder.build().map_err(|e| ControlError::Config(e.to_string()))?);
        }
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| ControlError::Config(e.to_string()))?;
        // The handles finish only when the clients quit; connection errors are retried by the
        // reconnect policy and surface through `ping` and calls.
        for client in &clients {
            drop(client.connect());
        }
        drop(subscriber.connect());
        drop(subscriber.manage_subscriptions());
        let watchers: Arc<Mutex<HashMap<String, watch::Sender<u64>>>> = Arc::default();
        let routed = watchers.clone();
        let mut messages = subscriber.message_rx();
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(msg) => {
                        if let Ok(map) = routed.lock() {
                            if let Some(tx) = map.get(&*msg.channel) {
                                tx.send_modify(|v| *v += 1);
                            }
                        }
                    }
                    // Lagged: messages were dropped — wake every waiter to re-check.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(map) = routed.lock() {
                            map.values().for_each(|tx| tx.send_modify(|v| *v += 1));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let on_reconnect = watchers.clone();
        drop(subscriber.on_reconnect(move |_| {
            let watchers = on_reconnect.clone();
            async move {
                if let Ok(map) = watchers.lock() {
                    map.values().for_each(|tx| tx.send_modify(|v| *v += 1));
                }
                Ok(())
            }
        }));
        Ok(RedisControlPlane {
            clients,
            next: std::sync::atomic::AtomicUsize::new(0),
            call_timeout,
            subscriber,
            prefix: prefix.to_owned(),
            watchers,
        })
    }

    /// The key prefix (`REDIS_POOL_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A command client (round-robin over `REDIS_POOL_SIZE` connections); tests and benchmarks
    /// inspect Redis through it too.
    pub fn client(&self) -> &Client {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }

    pub(crate) fn keys(&self, pool: &ServerId) -> PoolKeys {
        PoolKeys::new(&self.prefix, pool)
    }

    /// Runs a bounded call, failing fast while disconnected.
    pub(crate) async fn bounded<T, F>(&self, call: F) -> Result<T, ControlError>
    where
        F: std::future::Future<Output = Result<T, FredError>>,
    {
        if !self.clients.iter().any(|c| c.is_connected()) {
            return Err(ControlError::Unavailable("not connected to redis".to_owned()));
        }
        match tokio::time::timeout(self.call_timeout, call).await {
            Err(_) => Err(ControlError::OutcomeUnknown(format!(
                "no reply within {:?}",
                self.call_timeout
            ))),
            Ok(Err(e)) => Err(classify(e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    pub(crate) async fn eval(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, ControlError> {
        self.bounded(script.evalsha_with_reload::<Value, _, _>(self.client(), keys, args))
            .await
    }

    pub(crate) async fn eval_pool(
        &self,
        script: &Script,
        pool: &ServerId,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, ControlError> {
        Ok(items(self.eval(script, self.keys(pool).keys, args).await?))
    }

    pub async fn ping(&self) -> Result<(), ControlError> {
        self.bounded(self.client().ping::<String>(None)).await.map(|_| ())
    }

    pub async fn pools(&self) -> Result<Vec<ServerId>, ControlError> {
        let ids: Vec<String> = self.bounded(self.client().smembers(registry_key(&self.prefix))).await?;
        let mut out: Vec<ServerId> = ids.iter().filter_map(|i| ServerId::parse(i).ok()).collect();
        out.sort();
        Ok(out)
    }

    pub async fn changes(&self, pool: &ServerId) -> Result<watch::Receiver<u64>, ControlError> {
        let channel = self.keys(pool).channel;
        let (rx, fresh) = {
            let mut map = self
                .watchers
                .lock()
                .map_err(|_| ControlError::Protocol("watcher map poisoned".into()))?;
            match map.get(&channel) {
                Some(tx) => (tx.subscribe(), false),
                None => {
                    let (tx, rx) = watch::channel(0);
                    map.insert(channel.clone(), tx);
                    (rx, true)
                }
            }
        };
        if fresh {
            // Best effort: without the subscription, waiters still re-check every WAIT_RECHECK.
            match tokio::time::timeout(CALL_TIMEOUT, self.subscriber.subscribe(channel.clone())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%channel, error = %e, "subscribe failed; waiters fall back to re-checks"),
                Err(_) => tracing::debug!(%channel, "subscribe timed out; waiters fall back to re-checks"),
            }
        }
        Ok(rx)
    }

    pub async fn close(&self) {
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.subscriber.quit()).await;
        for client in &self.clients {
            let _ = tokio::time::timeout(self.call_timeout, client.quit()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rediss://` (and its Sentinel and Cluster forms) turn TLS on: the client is built with
    /// rustls, so a managed Redis that requires TLS works (and `redis://` stays plain).
    #[test]
    fn rediss_urls_use_tls() {
        for url in [
            "rediss://:secret@127.0.0.1:6380/0",
            "rediss-cluster://127.0.0.1:7000?node=127.0.0.1:7001",
            "rediss-sentinel://127.0.0.1:26379/0?sentinelServiceName=mymaster",
        ] {
            let config = FredConfig::from_url(url).expect(url);
            assert!(config.uses_rustls(), "{url}");
        }
        assert!(!FredConfig::from_url("redis://127.0.0.1:6379").expect("url").uses_tls());
    }
}
