-- Limits kept in the database. Rate limits: one token bucket per limit and client (an address, an account
-- name or a user id). With SQLite one node serves the database and keeps its buckets in memory;
-- the table exists so that both databases have the same schema. A bucket absent is full. Times
-- are seconds since the Unix epoch, fractional. Mirrors migrations/postgres (same table, columns
-- and constraint names).
CREATE TABLE rate_buckets (
    limit_name TEXT    NOT NULL,
    client     TEXT    NOT NULL,
    tokens     REAL    NOT NULL,
    allowed    INTEGER NOT NULL CHECK (allowed IN (0, 1)),
    updated_at REAL    NOT NULL,
    CONSTRAINT rate_buckets_pkey PRIMARY KEY (limit_name, client)
);
CREATE INDEX idx_rate_buckets_updated ON rate_buckets (updated_at);

-- The transcript sockets open now. A node's sockets go with it (deleted with its registry row).
CREATE TABLE socket_slots (
    id        BLOB NOT NULL CONSTRAINT socket_slots_pkey PRIMARY KEY,
    user_id   BLOB NOT NULL,
    node_id   BLOB NOT NULL CONSTRAINT socket_slots_node_id_fkey REFERENCES nodes (id) ON DELETE CASCADE,
    opened_at TEXT NOT NULL CHECK (unixepoch(opened_at) IS NOT NULL)
);
CREATE INDEX idx_socket_slots_user ON socket_slots (user_id);
