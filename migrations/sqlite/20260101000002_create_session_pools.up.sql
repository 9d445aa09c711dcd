-- One pool per server: its durable identity and lifecycle status. Live slot state is in the
-- control plane (Redis or the embedded twin), never here.
CREATE TABLE IF NOT EXISTS session_pools (
    id          TEXT PRIMARY KEY,
    server_id   TEXT NOT NULL UNIQUE REFERENCES servers(id) ON DELETE CASCADE,
    strategy    TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'disabled')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
