DROP INDEX IF EXISTS idx_sessions_live_user_category_mode;
DROP INDEX IF EXISTS idx_sessions_live_user_mode;
DROP INDEX IF EXISTS idx_sessions_live_user_category;
DROP INDEX IF EXISTS idx_sessions_live_user;
CREATE INDEX IF NOT EXISTS idx_sessions_user_category_mode ON sessions (user_id, counselor_category, mode, started_at DESC, id DESC);
DROP TRIGGER IF EXISTS session_tallies_on_update;
DROP TRIGGER IF EXISTS session_tallies_on_delete;
DROP TRIGGER IF EXISTS session_tallies_on_insert;
DROP TABLE IF EXISTS session_tallies;
