-- SQLite cannot drop a column that takes part in a foreign key (reviewed_by), so crisis_events
-- is rebuilt in its earlier shape; nothing references it.
CREATE TABLE crisis_events_before_review (
    id                 BLOB    NOT NULL PRIMARY KEY,
    session_id         BLOB    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    message_sequence   INTEGER NOT NULL CHECK (message_sequence >= 0),
    level              TEXT    NOT NULL CHECK (level IN ('concern', 'crisis')),
    signal             TEXT    NOT NULL CHECK (length(signal) BETWEEN 1 AND 50),
    flagged_for_review INTEGER NOT NULL DEFAULT 1 CHECK (flagged_for_review IN (0, 1)),
    created_at         TEXT    NOT NULL
) STRICT;
INSERT INTO crisis_events_before_review
    SELECT id, session_id, message_sequence, level, signal, flagged_for_review, created_at FROM crisis_events;
DROP TABLE crisis_events;
ALTER TABLE crisis_events_before_review RENAME TO crisis_events;
CREATE INDEX idx_crisis_session ON crisis_events (session_id);
CREATE INDEX idx_crisis_review ON crisis_events (flagged_for_review) WHERE flagged_for_review = 1;

ALTER TABLE users DROP COLUMN role;
