-- Every admin change: who, what, the state before and after (upstream header values redacted),
-- when. Written in the same transaction as the change it records.
CREATE TABLE IF NOT EXISTS admin_audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    server_id   TEXT,
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX IF NOT EXISTS admin_audit_log_server_idx ON admin_audit_log (server_id, id);
