DROP INDEX IF EXISTS mcp_sessions_closed_at_idx;
DROP INDEX IF EXISTS mcp_sessions_server_closed_idx;
ALTER TABLE mcp_sessions DROP COLUMN close_reason;
