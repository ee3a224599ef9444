DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS crisis_events;
DROP TABLE IF EXISTS transcript_messages;
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS counselor_categories;
DROP TABLE IF EXISTS users;
