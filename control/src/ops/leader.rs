//! Leader election (`leader.lua`, keys of the `{_leader}` tag): campaign, renew, resign and the
//! current holder; the holder key's expiry is set by the control plane, never by a node.
//!
//! Script: `lua/leader.lua`. Below, its Redis call (arguments, typed reply) and its embedded twin.

use std::sync::LazyLock;

use fred::interfaces::KeysInterface as _;
use fred::types::scripts::Script;
use fred::types::Value;

use crate::embedded::pool::*;
use crate::embedded::EmbeddedControlPlane;
use crate::keys::leader_keys;
use crate::redis::reply::*;
use crate::redis::RedisControlPlane;
use crate::*;

/// What a leader does with its term (the script's `op` argument; campaigning has its own call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderOp {
    /// Extend the holder key's TTL.
    Renew,
    /// Delete the holder key now, so another process can lead at once.
    Resign,
}

impl LeaderOp {
    fn as_str(self) -> &'static str {
        match self {
            LeaderOp::Renew => "renew",
            LeaderOp::Resign => "resign",
        }
    }
}

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("../lua/leader.lua")));

impl RedisControlPlane {
    pub async fn campaign(&self, holder: &str, ttl: Duration) -> Result<Campaign, ControlError> {
        let keys = leader_keys(&self.prefix).to_vec();
        let args = vec![
            Value::from("campaign"),
            Value::from(holder),
            Value::from("0"),
            Value::from(ttl.as_millis() as i64),
        ];
        let reply = items(self.eval(&SCRIPT, keys, args).await?);
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
            _ => Err(unexpected("campaign", &reply)),
        }
    }

    pub async fn leader(&self) -> Result<Option<(String, u64)>, ControlError> {
        let [holder, _] = leader_keys(&self.prefix);
        let value: Option<String> = self.bounded(self.client().get(holder)).await?;
        Ok(value.as_deref().and_then(crate::parse_leader))
    }

    pub async fn seed_term(&self, min: u64) -> Result<(), ControlError> {
        let keys = leader_keys(&self.prefix).to_vec();
        let args = vec![
            Value::from("seed"),
            Value::from(""),
            Value::from(min.to_string()),
            Value::from(0),
        ];
        self.eval(&SCRIPT, keys, args).await.map(|_| ())
    }

    pub async fn leader_op(&self, op: LeaderOp, holder: &str, term: u64, ttl: Duration) -> Result<bool, ControlError> {
        let keys = leader_keys(&self.prefix).to_vec();
        let args = vec![
            Value::from(op.as_str()),
            Value::from(holder),
            Value::from(term.to_string()),
            Value::from(ttl.as_millis() as i64),
        ];
        let reply = items(self.eval(&SCRIPT, keys, args).await?);
        Ok(reply.first().and_then(int) == Some(1))
    }
}

impl EmbeddedControlPlane {
    pub async fn campaign(&self, holder: &str, ttl: Duration) -> Result<Campaign, ControlError> {
        let mut state = self.leader_state()?;
        if let Some((by, _)) = &state.leader {
            return Ok(match by.rsplit_once('|') {
                Some((h, term)) if h == holder => Campaign::Won {
                    term: term.parse().unwrap_or(0),
                },
                _ => Campaign::Held { by: by.clone() },
            });
        }
        state.term += 1;
        let term = state.term;
        state.leader = Some((format!("{holder}|{term}"), now_ms() + ttl.as_millis() as i64));
        Ok(Campaign::Won { term })
    }

    pub async fn leader(&self) -> Result<Option<(String, u64)>, ControlError> {
        let state = self.leader_state()?;
        Ok(state.leader.as_ref().and_then(|(v, _)| crate::parse_leader(v)))
    }

    pub async fn seed_term(&self, min: u64) -> Result<(), ControlError> {
        let mut state = self.leader_state()?;
        state.term = state.term.max(min);
        Ok(())
    }

    pub async fn leader_op(&self, op: LeaderOp, holder: &str, term: u64, ttl: Duration) -> Result<bool, ControlError> {
        let mut state = self.leader_state()?;
        let mine = format!("{holder}|{term}");
        if state.leader.as_ref().map(|(v, _)| v) != Some(&mine) {
            return Ok(false);
        }
        match op {
            LeaderOp::Renew => state.leader = Some((mine, now_ms() + ttl.as_millis() as i64)),
            LeaderOp::Resign => state.leader = None,
        }
        Ok(true)
    }
}
