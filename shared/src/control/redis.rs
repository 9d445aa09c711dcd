//! The Redis control plane (fred client: standalone, Sentinel or Cluster from the URL scheme).
//!
//! Every pool change is one Lua script (`lua/*.lua`, each prefixed with `lua/prelude.lua`),
//! loaded once and called by SHA with a reload on NOSCRIPT (a Sentinel failover or a restart
//! empties the script cache; in Cluster the load goes to every primary). The client reconnects
//! forever with capped backoff and every call is bounded by [`CALL_TIMEOUT`], so Redis being down
//! turns into fast [`ControlError::Unavailable`] errors, never hangs. All scripts are idempotent
//! (by lease, reservation or binding id), so fred re-sending a command after a reconnect is safe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{EventInterface, HashesInterface, KeysInterface, PubsubInterface, SetsInterface};
use fred::prelude::{Builder, ClientLike, Config as FredConfig, Error as FredError, ErrorKind, ReconnectPolicy};
use fred::types::scripts::Script;
use fred::types::Value;
use tokio::sync::watch;

use super::keys::{leader_keys, registry_key, PoolKeys};
use super::{
    AcquireRequest, Attempt, Campaign, Changed, Committed, ControlError, Lease, Outcome, PoolSpec, PoolStats,
    Reclaimed, Reservation, SlotMeta, SlotRecord, SlotState, CALL_TIMEOUT,
};
use crate::domain::server::ServerId;

/// Time to establish one connection before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff: from 100 ms doubling up to 2 s, retrying forever (0 = unlimited).
const RECONNECT_MIN_MS: u32 = 100;
const RECONNECT_MAX_MS: u32 = 2_000;

const PRELUDE: &str = include_str!("lua/prelude.lua");

macro_rules! pool_script {
    ($file:literal) => {
        Script::from_lua(format!("{}\n{}", PRELUDE, include_str!(concat!("lua/", $file))))
    };
}

/// The loaded scripts (the SHA is computed locally; the body is sent only on NOSCRIPT).
struct Scripts {
    acquire: Script,
    commit: Script,
    abort: Script,
    release: Script,
    renew: Script,
    unbind: Script,
    touch: Script,
    mark: Script,
    reclaim: Script,
    sync: Script,
    stats: Script,
    fence: Script,
    recycle: Script,
    warm: Script,
    leader: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            acquire: pool_script!("acquire.lua"),
            commit: pool_script!("commit.lua"),
            abort: pool_script!("abort.lua"),
            release: pool_script!("release.lua"),
            renew: pool_script!("renew.lua"),
            unbind: pool_script!("unbind.lua"),
            touch: pool_script!("touch.lua"),
            mark: pool_script!("mark.lua"),
            reclaim: pool_script!("reclaim.lua"),
            sync: pool_script!("sync.lua"),
            stats: pool_script!("stats.lua"),
            fence: pool_script!("fence.lua"),
            recycle: pool_script!("recycle.lua"),
            warm: pool_script!("warm.lua"),
            leader: Script::from_lua(include_str!("lua/leader.lua")),
        }
    }
}

/// Redis-backed control plane.
pub struct RedisControlPlane {
    client: Client,
    subscriber: SubscriberClient,
    prefix: String,
    scripts: Scripts,
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

fn classify(e: FredError) -> ControlError {
    match e.kind() {
        ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::IO => ControlError::OutcomeUnknown(e.to_string()),
        ErrorKind::Config | ErrorKind::Url | ErrorKind::Auth => ControlError::Config(e.to_string()),
        ErrorKind::Cluster | ErrorKind::Routing | ErrorKind::Backpressure | ErrorKind::Sentinel => {
            ControlError::Unavailable(e.to_string())
        }
        _ if e.details().starts_with("LOADING") || e.details().starts_with("READONLY") => {
            ControlError::Unavailable(e.to_string())
        }
        _ => ControlError::Protocol(e.to_string()),
    }
}

fn protocol(what: &str, v: &Value) -> ControlError {
    ControlError::Protocol(format!("{what}: {v:?}"))
}

fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        Value::Null => vec![],
        other => vec![other],
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn record(v: &Value) -> Result<SlotRecord, ControlError> {
    let bytes: &[u8] = match v {
        Value::Bytes(b) => b,
        Value::String(s) => s.as_bytes(),
        other => return Err(protocol("slot record", other)),
    };
    SlotRecord::decode(bytes).map_err(ControlError::Protocol)
}

/// `{'L', lease_id, slot_id, record, expires, fresh}` → a lease.
fn lease(reply: &[Value]) -> Result<Lease, ControlError> {
    let (Some(id), Some(rec), Some(exp), Some(fresh)) = (reply.get(1), reply.get(3), reply.get(4), reply.get(5)) else {
        return Err(ControlError::Protocol(format!("short lease reply: {reply:?}")));
    };
    Ok(Lease {
        id: text(id).ok_or_else(|| protocol("lease id", id))?,
        slot: record(rec)?,
        expires_ms: int(exp).ok_or_else(|| protocol("expiry", exp))?,
        fresh: int(fresh) == Some(1),
    })
}

fn script_error(code: &str) -> ControlError {
    match code {
        "NOCONFIG" => ControlError::NotConfigured,
        "BINDING_LOST" => ControlError::BindingLost,
        "NORESV" => ControlError::ReservationGone,
        other => ControlError::Protocol(format!("script error {other}")),
    }
}

/// `{changed, records...}` → [`Changed`].
fn changed(reply: Vec<Value>) -> Result<Changed, ControlError> {
    let mut it = reply.into_iter();
    let flag = it.next().map(|v| int(&v) == Some(1)).unwrap_or(false);
    let closed = it.map(|v| record(&v)).collect::<Result<Vec<_>, _>>()?;
    Ok(Changed { changed: flag, closed })
}

impl RedisControlPlane {
    /// Builds the clients and starts connecting in the background.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, ControlError> {
        let mut config = FredConfig::from_url(url).map_err(|e| ControlError::Config(e.to_string()))?;
        // Apply the reconnect policy to the first connection too: a node started while Redis is
        // down must connect once it comes up (fred's default gives up on a failed first attempt).
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CALL_TIMEOUT;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = CALL_TIMEOUT;
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_MS,
                RECONNECT_MAX_MS,
                2,
            ));
        let client = builder.build().map_err(|e| ControlError::Config(e.to_string()))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| ControlError::Config(e.to_string()))?;
        // The handles finish only when the clients quit; connection errors are retried by the
        // reconnect policy and surface through `ping` and calls.
        drop(client.connect());
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
            client,
            subscriber,
            prefix: prefix.to_owned(),
            scripts: Scripts::new(),
            watchers,
        })
    }

    /// The key prefix (`REDIS_POOL_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The underlying client (tests and benchmarks inspect Redis through it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn keys(&self, pool: &ServerId) -> PoolKeys {
        PoolKeys::new(&self.prefix, pool)
    }

    /// Runs a bounded call, failing fast while disconnected.
    async fn bounded<T, F>(&self, call: F) -> Result<T, ControlError>
    where
        F: std::future::Future<Output = Result<T, FredError>>,
    {
        if !self.client.is_connected() {
            return Err(ControlError::Unavailable("not connected to redis".to_owned()));
        }
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(ControlError::OutcomeUnknown(format!(
                "no reply within {CALL_TIMEOUT:?}"
            ))),
            Ok(Err(e)) => Err(classify(e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn eval(&self, script: &Script, keys: Vec<String>, args: Vec<Value>) -> Result<Value, ControlError> {
        self.bounded(script.evalsha_with_reload::<Value, _, _>(&self.client, keys, args))
            .await
    }

    async fn eval_pool(&self, script: &Script, pool: &ServerId, args: Vec<Value>) -> Result<Vec<Value>, ControlError> {
        Ok(items(self.eval(script, self.keys(pool).keys, args).await?))
    }

    pub async fn ping(&self) -> Result<(), ControlError> {
        self.bounded(self.client.ping::<String>(None)).await.map(|_| ())
    }

    pub async fn sync(&self, pool: &ServerId, spec: &PoolSpec) -> Result<u64, ControlError> {
        let args: Vec<Value> = spec
            .fields()
            .into_iter()
            .flat_map(|(k, v)| [Value::from(k), Value::from(v)])
            .collect();
        let gen = self.eval(&self.scripts.sync, self.keys(pool).keys, args).await?;
        let registry = registry_key(&self.prefix);
        self.bounded(self.client.sadd::<i64, _, _>(registry, pool.as_str()))
            .await?;
        int(&gen).map(|g| g as u64).ok_or_else(|| protocol("sync", &gen))
    }

    pub async fn try_acquire(&self, pool: &ServerId, req: &AcquireRequest) -> Result<Attempt, ControlError> {
        let args = vec![
            Value::from(req.lease_id.as_str()),
            Value::from(req.holder.as_str()),
            Value::from(req.key.as_deref().unwrap_or("")),
            Value::from(req.waited_ms.min(i64::MAX as u64) as i64),
        ];
        let reply = self.eval_pool(&self.scripts.acquire, pool, args).await?;
        match reply.first().and_then(text).as_deref() {
            Some("L") => Ok(Attempt::Leased(lease(&reply)?)),
            Some("R") => Ok(Attempt::Create(Reservation {
                id: reply
                    .get(1)
                    .and_then(text)
                    .ok_or_else(|| ControlError::Protocol("reservation id".into()))?,
                endpoint: reply.get(2).and_then(int).unwrap_or(0) as u32,
            })),
            Some("W") => Ok(Attempt::Wait {
                in_use: reply.get(1).and_then(int).unwrap_or(0) as u32,
                limit: reply.get(2).and_then(int).unwrap_or(0) as u32,
            }),
            Some("E") => Err(script_error(&reply.get(1).and_then(text).unwrap_or_default())),
            _ => Err(ControlError::Protocol(format!("acquire reply {reply:?}"))),
        }
    }

    pub async fn commit(
        &self,
        pool: &ServerId,
        reservation: &str,
        slot_id: &str,
        meta: &SlotMeta,
    ) -> Result<Committed, ControlError> {
        let args = vec![
            Value::from(reservation),
            Value::from(slot_id),
            Value::Bytes(meta.encode().into()),
        ];
        let reply = self.eval_pool(&self.scripts.commit, pool, args).await?;
        match reply.first().and_then(text).as_deref() {
            Some("L") => Ok(Committed::Leased(lease(&reply)?)),
            Some("C") => Ok(Committed::Added(slot_id.to_owned())),
            Some("E") => Err(script_error(&reply.get(1).and_then(text).unwrap_or_default())),
            _ => Err(ControlError::Protocol(format!("commit reply {reply:?}"))),
        }
    }

    pub async fn abort(&self, pool: &ServerId, reservation: &str) -> Result<bool, ControlError> {
        let reply = self
            .eval_pool(&self.scripts.abort, pool, vec![Value::from(reservation)])
            .await?;
        Ok(reply.first().and_then(int) == Some(1))
    }

    pub async fn release(&self, pool: &ServerId, lease: &str, outcome: Outcome) -> Result<Changed, ControlError> {
        let latency = outcome.latency_ms.map_or(-1, |l| l.min(i64::MAX as u64) as i64);
        let args = vec![
            Value::from(lease),
            Value::from(latency),
            Value::from(i64::from(outcome.error)),
            Value::from(i64::from(outcome.retire)),
            Value::from(i64::from(outcome.affinity.code())),
        ];
        changed(self.eval_pool(&self.scripts.release, pool, args).await?)
    }

    pub async fn renew(&self, pool: &ServerId, lease: &str) -> Result<Option<i64>, ControlError> {
        let reply = self
            .eval_pool(&self.scripts.renew, pool, vec![Value::from(lease)])
            .await?;
        Ok(match reply.first().and_then(int) {
            Some(1) => reply.get(1).and_then(int),
            _ => None,
        })
    }

    pub async fn unbind(&self, pool: &ServerId, key: &str) -> Result<Changed, ControlError> {
        changed(
            self.eval_pool(&self.scripts.unbind, pool, vec![Value::from(key)])
                .await?,
        )
    }

    pub async fn touch(&self, pool: &ServerId, key: &str) -> Result<bool, ControlError> {
        let reply = self
            .eval_pool(&self.scripts.touch, pool, vec![Value::from(key)])
            .await?;
        Ok(reply.first().and_then(int) == Some(1))
    }

    pub async fn mark(&self, pool: &ServerId, slot: &str, state: SlotState) -> Result<Changed, ControlError> {
        let name = match state {
            SlotState::Ready => "ready",
            SlotState::Draining => "draining",
            SlotState::Unhealthy => "unhealthy",
            SlotState::Retired | SlotState::Closed => "retired",
        };
        changed(
            self.eval_pool(&self.scripts.mark, pool, vec![Value::from(slot), Value::from(name)])
                .await?,
        )
    }

    pub async fn reclaim(&self, pool: &ServerId, limit: u32) -> Result<Reclaimed, ControlError> {
        let reply = self
            .eval_pool(&self.scripts.reclaim, pool, vec![Value::from(i64::from(limit))])
            .await?;
        let count = |i: usize| reply.get(i).and_then(int).unwrap_or(0) as u32;
        let closed = reply.iter().skip(3).map(record).collect::<Result<Vec<_>, _>>()?;
        Ok(Reclaimed {
            leases: count(0),
            bindings: count(1),
            reservations: count(2),
            closed,
        })
    }

    pub async fn stats(&self, pool: &ServerId) -> Result<PoolStats, ControlError> {
        let reply = self.eval_pool(&self.scripts.stats, pool, vec![]).await?;
        let pairs: Vec<(String, u64)> = reply
            .chunks(2)
            .filter_map(|kv| Some((text(kv.first()?)?, int(kv.get(1)?)?.max(0) as u64)))
            .collect();
        Ok(PoolStats::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), *v))))
    }

    pub async fn slots(&self, pool: &ServerId) -> Result<Vec<SlotRecord>, ControlError> {
        let key = self.keys(pool).keys[1].clone();
        let raw: Vec<Value> = self.bounded(self.client.hvals::<Vec<Value>, _>(key)).await?;
        let mut out = raw.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|s| s.seq);
        Ok(out)
    }

    pub async fn note_health(&self, pool: &ServerId, pinged: u32, failed: u32) -> Result<(), ControlError> {
        let keys = self.keys(pool);
        let fields = vec![("hping", i64::from(pinged)), ("hfail", i64::from(failed))];
        self.bounded(self.client.hset::<i64, _, _>(keys.stats_key(), fields))
            .await
            .map(|_| ())
    }

    pub async fn note_timeout(&self, pool: &ServerId) -> Result<(), ControlError> {
        let keys = self.keys(pool);
        self.bounded(self.client.hincrby::<i64, _, _>(keys.stats_key(), "tmo", 1))
            .await
            .map(|_| ())
    }

    pub async fn pools(&self) -> Result<Vec<ServerId>, ControlError> {
        let ids: Vec<String> = self.bounded(self.client.smembers(registry_key(&self.prefix))).await?;
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

    pub async fn campaign(&self, holder: &str, ttl: Duration) -> Result<Campaign, ControlError> {
        let keys = leader_keys(&self.prefix).to_vec();
        let args = vec![
            Value::from("campaign"),
            Value::from(holder),
            Value::from("0"),
            Value::from(ttl.as_millis() as i64),
        ];
        let reply = items(self.eval(&self.scripts.leader, keys, args).await?);
        match (reply.first().and_then(int), reply.get(1)) {
            (Some(1), Some(term)) => Ok(Campaign::Won {
                term: int(term).unwrap_or(0) as u64,
            }),
            (Some(0), Some(by)) => {
                let by = text(by).unwrap_or_default();
                // A re-sent campaign that had already won finds its own name: it still leads.
                match by.rsplit_once('|') {
                    Some((h, term)) if h == holder => Ok(Campaign::Won {
                        term: term.parse().unwrap_or(0),
                    }),
                    _ => Ok(Campaign::Held { by }),
                }
            }
            _ => Err(ControlError::Protocol(format!("campaign reply {reply:?}"))),
        }
    }

    pub async fn leader(&self) -> Result<Option<(String, u64)>, ControlError> {
        let [holder, _] = leader_keys(&self.prefix);
        let value: Option<String> = self.bounded(self.client.get(holder)).await?;
        Ok(value.as_deref().and_then(super::parse_leader))
    }

    pub async fn leader_op(&self, op: &str, holder: &str, term: u64, ttl: Duration) -> Result<bool, ControlError> {
        let keys = leader_keys(&self.prefix).to_vec();
        let args = vec![
            Value::from(op),
            Value::from(holder),
            Value::from(term.to_string()),
            Value::from(ttl.as_millis() as i64),
        ];
        let reply = items(self.eval(&self.scripts.leader, keys, args).await?);
        Ok(reply.first().and_then(int) == Some(1))
    }

    pub async fn fence(&self, pool: &ServerId, token: u64) -> Result<(), ControlError> {
        let reply = self
            .eval_pool(&self.scripts.fence, pool, vec![Value::from(token.to_string())])
            .await?;
        match reply.first().and_then(int) {
            Some(1) => Ok(()),
            _ => Err(ControlError::StaleFence {
                newest: reply.get(1).and_then(int).unwrap_or(0) as u64,
            }),
        }
    }

    pub async fn recycle(
        &self,
        pool: &ServerId,
        token: u64,
        max_age: Duration,
        limit: u32,
    ) -> Result<Vec<SlotRecord>, ControlError> {
        let args = vec![
            Value::from(token.to_string()),
            Value::from(max_age.as_millis() as i64),
            Value::from(i64::from(limit)),
        ];
        let reply = self.eval_pool(&self.scripts.recycle, pool, args).await?;
        match reply.first().and_then(text).as_deref() {
            Some("OK") => reply.iter().skip(1).map(record).collect(),
            Some("F") => Err(ControlError::StaleFence {
                newest: reply.get(1).and_then(int).unwrap_or(0) as u64,
            }),
            _ => Err(ControlError::Protocol(format!("recycle reply {reply:?}"))),
        }
    }

    pub async fn warm(
        &self,
        pool: &ServerId,
        token: u64,
        min: u32,
        reservation: &str,
        holder: &str,
    ) -> Result<Option<Reservation>, ControlError> {
        let args = vec![
            Value::from(token.to_string()),
            Value::from(i64::from(min)),
            Value::from(reservation),
            Value::from(holder),
        ];
        let reply = self.eval_pool(&self.scripts.warm, pool, args).await?;
        match reply.first().and_then(text).as_deref() {
            Some("R") => Ok(Some(Reservation {
                id: reservation.to_owned(),
                endpoint: reply.get(2).and_then(int).unwrap_or(0) as u32,
            })),
            Some("N") => Ok(None),
            Some("F") => Err(ControlError::StaleFence {
                newest: reply.get(1).and_then(int).unwrap_or(0) as u64,
            }),
            _ => Err(ControlError::Protocol(format!("warm reply {reply:?}"))),
        }
    }

    pub async fn close(&self) {
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.subscriber.quit()).await;
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.client.quit()).await;
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
