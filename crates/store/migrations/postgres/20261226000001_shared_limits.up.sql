-- Limits shared by every node of a deployment. Rate limits: one token bucket per limit and client (an
-- address, an account name or a user id). A bucket absent is full; one idle long enough to be
-- full again is deleted. Times are seconds since the Unix epoch, fractional, so that a refill is
-- one expression. Mirrors migrations/sqlite (same table, columns and constraint names).
CREATE TABLE rate_buckets (
    limit_name TEXT             NOT NULL,
    client     TEXT             NOT NULL,
    tokens     DOUBLE PRECISION NOT NULL,
    -- Whether the request that last touched the bucket was let through.
    allowed    BOOLEAN          NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    CONSTRAINT rate_buckets_pkey PRIMARY KEY (limit_name, client)
);
CREATE INDEX idx_rate_buckets_updated ON rate_buckets (updated_at);

-- The transcript sockets open now, on any node, so that a student's limit holds for the whole
-- deployment. A node's sockets go with it: when it leaves the registry, or is found dead and
-- removed, its rows are deleted with it.
CREATE TABLE socket_slots (
    id        UUID        NOT NULL CONSTRAINT socket_slots_pkey PRIMARY KEY,
    user_id   UUID        NOT NULL,
    node_id   UUID        NOT NULL CONSTRAINT socket_slots_node_id_fkey REFERENCES nodes (id) ON DELETE CASCADE,
    opened_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_socket_slots_user ON socket_slots (user_id);
