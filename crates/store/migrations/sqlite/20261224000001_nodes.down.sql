DROP INDEX IF EXISTS idx_sessions_open_by_node;
ALTER TABLE sessions DROP COLUMN node_id;
DROP TABLE IF EXISTS nodes;
