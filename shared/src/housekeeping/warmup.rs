//! The warm-up loop (leader only): keep `pool_min_size` idle, initialized upstream sessions ready
//! in every enabled pool, so a new client pays no upstream handshake. Each creation is a fenced
//! `warm` reservation (never beyond `pool_max_size`, I1), the upstream session is created
//! (`server/discover` first, else the `initialize` handshake), then committed — or the reservation
//! is aborted when the upstream fails.

use crate::control::{Committed, ControlError, Pools, SlotMeta};
use crate::domain::pool::Strategy;
use crate::domain::server::Server;
use crate::upstream::{UpstreamClient, LATEST_SESSION_VERSION, STATELESS_VERSION};

use super::leader::Leadership;

/// Most creations per pool per tick.
pub const CREATES_PER_TICK: u32 = 20;

#[derive(Clone)]
pub struct WarmUp {
    pub pools: Pools,
    pub upstream: UpstreamClient,
    pub leadership: Leadership,
    /// `POOL_ENABLED`: the global switch.
    pub enabled: bool,
}

/// Creates one upstream session at `url`: sessionless when the server answers `server/discover`.
pub async fn open_session(upstream: &UpstreamClient, server: &Server, url: &str) -> Result<SlotMeta, String> {
    let headers = server.upstream_headers.pairs();
    if let Ok(Some(d)) = upstream.discover(url, &headers).await {
        return Ok(SlotMeta {
            session_id: None,
            protocol_version: Some(STATELESS_VERSION.to_owned()),
            endpoint: Some(url.to_owned()),
            init: Some(d.to_string()),
        });
    }
    let init = upstream
        .initialize(url, &headers, LATEST_SESSION_VERSION)
        .await
        .map_err(|e| e.to_string())?;
    Ok(SlotMeta {
        session_id: init.session_id,
        protocol_version: Some(init.protocol_version),
        endpoint: Some(url.to_owned()),
        init: Some(init.result.to_string()),
    })
}

impl WarmUp {
    /// One pass; returns how many slots were created. Stops (and steps down) on a refused token.
    pub async fn tick(&self) -> u64 {
        let Some(term) = self.leadership.term() else { return 0 };
        if !self.enabled {
            return 0;
        }
        let Ok(pools) = self.pools.control.pools().await else {
            return 0;
        };
        let mut created = 0;
        for pool in pools.into_iter().take(super::cleanup::POOLS_PER_TICK) {
            let Ok(Some(server)) = self.pools.store.get_server(&pool).await else {
                continue;
            };
            // Under `none` every request gets a fresh session: warm ones would never be used.
            if !server.pool.pool_enabled
                || server.pool.pool_min_size == 0
                || server.pool.pool_strategy == Strategy::None
            {
                continue;
            }
            for _ in 0..CREATES_PER_TICK.min(server.pool.pool_min_size) {
                let id = uuid::Uuid::new_v4().to_string();
                let resv = match self
                    .pools
                    .control
                    .warm(&pool, term, server.pool.pool_min_size, &id, self.leadership.holder())
                    .await
                {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(ControlError::StaleFence { .. }) => {
                        self.leadership.step_down();
                        return created;
                    }
                    Err(e) => {
                        tracing::warn!(%pool, error = %e, "warm-up: reservation failed");
                        break;
                    }
                };
                let Some(endpoint) = server.endpoints.get(resv.endpoint as usize) else {
                    let _ = self.pools.control.abort(&pool, &resv.id).await;
                    break;
                };
                match open_session(&self.upstream, &server, &endpoint.url).await {
                    Ok(meta) => {
                        let slot = uuid::Uuid::new_v4().simple().to_string();
                        match self.pools.control.commit(&pool, &resv.id, &slot, &meta).await {
                            Ok(Committed::Added(_)) | Ok(Committed::Leased(_)) => created += 1,
                            Err(e) => tracing::warn!(%pool, error = %e, "warm-up: commit failed"),
                        }
                    }
                    Err(e) => {
                        tracing::info!(%pool, url = %endpoint.url, error = %e, "warm-up: upstream session not created");
                        let _ = self.pools.control.abort(&pool, &resv.id).await;
                        break;
                    }
                }
            }
        }
        created
    }
}
