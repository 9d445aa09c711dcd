-- Why an upstream session's history row was closed ("gone", "server deleted", ...), and the
-- indexes of the history pass: a server's open rows (closed_at IS NULL) and retention of closed
-- rows by closed_at. Additive: older releases ignore the column.
ALTER TABLE mcp_sessions ADD COLUMN close_reason TEXT;
CREATE INDEX IF NOT EXISTS mcp_sessions_server_closed_idx ON mcp_sessions (server_id, closed_at);
CREATE INDEX IF NOT EXISTS mcp_sessions_closed_at_idx ON mcp_sessions (closed_at);
