-- The nodes of a deployment: every running server records itself here and beats every few
-- seconds; a node whose heartbeat has stopped is dead, and the sessions it ran are closed. With
-- SQLite there is one node per database, so every other node recorded is a stopped one. A node
-- has a new id each time it starts. `sessions.node_id` names the node that runs a session's call
-- (NULL for sessions made before this migration, or by tools). Mirrors migrations/postgres (same
-- table, columns and constraint names).
CREATE TABLE nodes (
    id           BLOB    NOT NULL CONSTRAINT nodes_pkey PRIMARY KEY,
    address      TEXT    NOT NULL CONSTRAINT nodes_address_length CHECK (length(address) BETWEEN 1 AND 255),
    capacity     INTEGER NOT NULL CONSTRAINT nodes_capacity_check CHECK (capacity >= 0),
    live_calls   INTEGER NOT NULL DEFAULT 0 CONSTRAINT nodes_live_calls_check CHECK (live_calls >= 0),
    started_at   TEXT    NOT NULL CHECK (unixepoch(started_at) IS NOT NULL),
    heartbeat_at TEXT    NOT NULL CHECK (unixepoch(heartbeat_at) IS NOT NULL)
);
ALTER TABLE sessions ADD COLUMN node_id BLOB;
CREATE INDEX idx_sessions_open_by_node ON sessions (node_id) WHERE ended_at IS NULL;
