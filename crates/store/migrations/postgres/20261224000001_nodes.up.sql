-- The nodes of a deployment: every running server records itself here and beats every few
-- seconds; a node whose heartbeat has stopped is dead, and another node closes the sessions it
-- ran. A node has a new id each time it starts. `sessions.node_id` names the node that runs a
-- session's call (NULL for sessions made before this migration, or by tools). Mirrors
-- migrations/sqlite (same table, columns and constraint names).
CREATE TABLE nodes (
    id           UUID        NOT NULL CONSTRAINT nodes_pkey PRIMARY KEY,
    -- Where the other nodes reach this one (its HTTP address).
    address      TEXT        NOT NULL CONSTRAINT nodes_address_length CHECK (length(address) BETWEEN 1 AND 255),
    capacity     BIGINT      NOT NULL CONSTRAINT nodes_capacity_check CHECK (capacity >= 0),
    live_calls   BIGINT      NOT NULL DEFAULT 0 CONSTRAINT nodes_live_calls_check CHECK (live_calls >= 0),
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE sessions ADD COLUMN node_id UUID;
CREATE INDEX idx_sessions_open_by_node ON sessions (node_id) WHERE ended_at IS NULL;
