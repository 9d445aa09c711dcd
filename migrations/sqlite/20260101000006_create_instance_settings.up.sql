-- Values an instance generates once and must keep across restarts (the embedded node's JWT
-- secret when none is configured).
CREATE TABLE IF NOT EXISTS instance_settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
