-- Upstream MCP sessions the pools created: a history for operators and the optimizer.
CREATE TABLE IF NOT EXISTS mcp_sessions (
    id                   TEXT PRIMARY KEY,
    server_id            TEXT NOT NULL,
    pool_id              TEXT REFERENCES session_pools(id) ON DELETE SET NULL,
    endpoint_url         TEXT NOT NULL,
    protocol_version     TEXT,
    status               TEXT NOT NULL DEFAULT 'healthy',
    reuse_count          BIGINT NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL,
    closed_at            TIMESTAMPTZ,
    last_health_check    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS mcp_sessions_pool_id_idx ON mcp_sessions (pool_id);
