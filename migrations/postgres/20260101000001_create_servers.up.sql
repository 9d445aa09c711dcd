-- Servers (logical upstream MCP servers) with the seed's pool columns and poolgate's own.
-- CHECK constraints mirror PoolConfig::apply so that even a hand-written UPDATE cannot store a
-- configuration the API would refuse.
CREATE TABLE IF NOT EXISTS servers (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    endpoints             TEXT NOT NULL,               -- JSON: [{"url": "...", "weight": 1}]
    upstream_headers      TEXT NOT NULL DEFAULT '{}',  -- JSON object; never returned by the API
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    pool_enabled          BOOLEAN NOT NULL DEFAULT FALSE,
    pool_strategy         TEXT NOT NULL DEFAULT 'round_robin'
        CHECK (pool_strategy IN ('round_robin', 'least_connections', 'sticky', 'weighted', 'none')),
    pool_min_size         INTEGER NOT NULL DEFAULT 1 CHECK (pool_min_size >= 0),
    pool_max_size         INTEGER NOT NULL DEFAULT 10 CHECK (pool_max_size >= 1),
    pool_timeout          INTEGER NOT NULL DEFAULT 30 CHECK (pool_timeout > 0),
    pool_recycle_seconds  INTEGER NOT NULL DEFAULT 3600 CHECK (pool_recycle_seconds > 0),
    pool_pre_ping         BOOLEAN NOT NULL DEFAULT TRUE,
    pool_isolation        TEXT NOT NULL DEFAULT 'session' CHECK (pool_isolation IN ('session', 'shared')),
    pool_session_capacity INTEGER NOT NULL DEFAULT 1 CHECK (pool_session_capacity >= 1),
    pool_lease_ttl        INTEGER NOT NULL DEFAULT 60 CHECK (pool_lease_ttl > 0),
    pool_idle_ttl         INTEGER NOT NULL DEFAULT 1800 CHECK (pool_idle_ttl > 0),
    CONSTRAINT servers_pool_min_le_max CHECK (pool_min_size <= pool_max_size)
);
