-- counsel schema for SQLite. Mirrors migrations/postgres: same tables, columns and constraint
-- names. UUIDs are 16-byte BLOBs, timestamps RFC 3339 UTC text, booleans 0/1. STRICT tables
-- reject values of the wrong type, as PostgreSQL would.

CREATE TABLE users (
    id            BLOB    NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    is_blocked    INTEGER NOT NULL DEFAULT 0 CHECK (is_blocked IN (0, 1)),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username),
    -- Same rule as PostgreSQL's  username ~ '^\\[^\\]+\\[^\\]+$'  (SQLite has no regex): a
    -- backslash, a non-empty domain, a backslash, a non-empty user, and no other backslash.
    CONSTRAINT username_format_check CHECK (
        length(username) <= 255
        AND substr(username, 1, 1) = '\'
        AND substr(username, 2, 1) NOT IN ('', '\')
        AND substr(username, -1, 1) <> '\'
        AND length(username) - length(replace(username, '\', '')) = 2
    )
) STRICT;

CREATE INDEX idx_users_is_blocked ON users (is_blocked) WHERE is_blocked = 1;

CREATE TABLE counselor_categories (
    id            BLOB    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE CHECK (name IN
                      ('Health', 'Career', 'Academic', 'Financial', 'Social', 'Personal Development')),
    description   TEXT    NOT NULL,
    icon_name     TEXT    NOT NULL CHECK (length(icon_name) <= 50),
    system_prompt TEXT    NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    display_order INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    CONSTRAINT system_prompt_not_empty CHECK (length(trim(system_prompt)) > 0)
) STRICT;

CREATE INDEX idx_counselor_categories_enabled ON counselor_categories (enabled) WHERE enabled = 1;

CREATE TABLE sessions (
    id                       BLOB    NOT NULL PRIMARY KEY,
    user_id                  BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    counselor_category       TEXT    NOT NULL CHECK (counselor_category IN
                                 ('Health', 'Career', 'Academic', 'Financial', 'Social', 'Personal Development')),
    mode                     TEXT    NOT NULL CHECK (mode IN ('voice', 'video')),
    room_name                TEXT    NOT NULL,
    started_at               TEXT    NOT NULL CHECK (unixepoch(started_at) IS NOT NULL),
    ended_at                 TEXT    CHECK (ended_at IS NULL OR unixepoch(ended_at) IS NOT NULL),
    -- Whole seconds, like PostgreSQL's FLOOR(EXTRACT(EPOCH FROM ended_at - started_at)).
    duration_seconds         INTEGER GENERATED ALWAYS AS (
        CAST(round((unixepoch(ended_at, 'subsec') - unixepoch(started_at, 'subsec')) * 1000) AS INTEGER) / 1000
    ) STORED,
    connection_quality       TEXT    CHECK (connection_quality IN ('excellent', 'good', 'fair', 'poor')),
    crisis_detected          INTEGER NOT NULL DEFAULT 0 CHECK (crisis_detected IN (0, 1)),
    transcript_message_count INTEGER NOT NULL DEFAULT 0 CHECK (transcript_message_count >= 0),
    -- Set when the student deletes the session; its transcript is erased at the same time.
    deleted_at               TEXT,
    created_at               TEXT    NOT NULL,
    CONSTRAINT room_name_length CHECK (length(room_name) BETWEEN 1 AND 255),
    CONSTRAINT ended_after_started CHECK (
        ended_at IS NULL OR unixepoch(ended_at, 'subsec') >= unixepoch(started_at, 'subsec')
    )
) STRICT;

-- Every student-facing query filters by user first and pages newest first, with the id as a
-- tie-breaker; these two indexes serve them without a sort. Single-column indexes on category or
-- mode are left out on purpose: with six and two values they never beat the user index, and
-- they tempt the planner into scanning every student's sessions to count one student's.
CREATE INDEX idx_sessions_user_started ON sessions (user_id, started_at DESC, id DESC);
CREATE INDEX idx_sessions_user_category_mode ON sessions (user_id, counselor_category, mode, started_at DESC, id DESC);
-- The retention purge selects by start time across all students.
CREATE INDEX idx_sessions_started_at ON sessions (started_at);
CREATE INDEX idx_sessions_active ON sessions (ended_at) WHERE ended_at IS NULL;

CREATE TABLE transcript_messages (
    id              BLOB    NOT NULL PRIMARY KEY,
    session_id      BLOB    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    speaker         TEXT    NOT NULL CHECK (speaker IN ('student', 'counselor')),
    -- AES-256-GCM: 12-byte nonce || ciphertext || 16-byte tag. Never plain text.
    text_encrypted  BLOB    NOT NULL CHECK (length(text_encrypted) >= 28),
    is_final        INTEGER NOT NULL DEFAULT 1 CHECK (is_final IN (0, 1)),
    sequence_number INTEGER NOT NULL CHECK (sequence_number >= 0),
    "timestamp"     TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    -- Also serves as the (session_id, sequence_number) index for reading a transcript in order.
    CONSTRAINT transcript_messages_session_sequence_key UNIQUE (session_id, sequence_number)
) STRICT;

CREATE INDEX idx_transcript_timestamp ON transcript_messages ("timestamp");

CREATE TABLE crisis_events (
    id                 BLOB    NOT NULL PRIMARY KEY,
    session_id         BLOB    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    message_sequence   INTEGER NOT NULL CHECK (message_sequence >= 0),
    level              TEXT    NOT NULL CHECK (level IN ('concern', 'crisis')),
    signal             TEXT    NOT NULL CHECK (length(signal) BETWEEN 1 AND 50),
    flagged_for_review INTEGER NOT NULL DEFAULT 1 CHECK (flagged_for_review IN (0, 1)),
    created_at         TEXT    NOT NULL
) STRICT;

CREATE INDEX idx_crisis_session ON crisis_events (session_id);
CREATE INDEX idx_crisis_review ON crisis_events (flagged_for_review) WHERE flagged_for_review = 1;

CREATE TABLE audit_log (
    id            BLOB NOT NULL PRIMARY KEY,
    user_id       BLOB REFERENCES users (id) ON DELETE SET NULL,
    action        TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    resource_type TEXT NOT NULL CHECK (length(resource_type) BETWEEN 1 AND 50),
    resource_id   BLOB NOT NULL,
    ip_address    TEXT CHECK (length(ip_address) <= 45),
    user_agent    TEXT,
    "timestamp"   TEXT NOT NULL
) STRICT;

CREATE INDEX idx_audit_user ON audit_log (user_id, "timestamp" DESC);
CREATE INDEX idx_audit_resource ON audit_log (resource_type, resource_id);
