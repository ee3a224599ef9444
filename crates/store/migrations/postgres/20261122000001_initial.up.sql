-- counsel schema for PostgreSQL. Mirrors migrations/sqlite: same tables, columns and constraint
-- names. Enumerations are TEXT with CHECK constraints (not enum types) so that both databases
-- hold the same schema and adding a value is an ordinary migration.

CREATE TABLE users (
    id            UUID         NOT NULL PRIMARY KEY,
    username      VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    is_blocked    BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    updated_at    TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT username_format_check CHECK (username ~ '^\\[^\\]+\\[^\\]+$')
);

CREATE INDEX idx_users_is_blocked ON users (is_blocked) WHERE is_blocked = TRUE;

CREATE TABLE counselor_categories (
    id            UUID         NOT NULL PRIMARY KEY,
    name          VARCHAR(100) NOT NULL UNIQUE CHECK (name IN
                      ('Health', 'Career', 'Academic', 'Financial', 'Social', 'Personal Development')),
    description   TEXT         NOT NULL,
    icon_name     VARCHAR(50)  NOT NULL,
    system_prompt TEXT         NOT NULL,
    enabled       BOOLEAN      NOT NULL DEFAULT TRUE,
    display_order BIGINT       NOT NULL,
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    updated_at    TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    CONSTRAINT system_prompt_not_empty CHECK (length(trim(system_prompt)) > 0)
);

CREATE INDEX idx_counselor_categories_enabled ON counselor_categories (enabled) WHERE enabled = TRUE;

CREATE TABLE sessions (
    id                       UUID        NOT NULL PRIMARY KEY,
    user_id                  UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    counselor_category       VARCHAR(32) NOT NULL CHECK (counselor_category IN
                                 ('Health', 'Career', 'Academic', 'Financial', 'Social', 'Personal Development')),
    mode                     VARCHAR(8)  NOT NULL CHECK (mode IN ('voice', 'video')),
    room_name                TEXT        NOT NULL,
    started_at               TIMESTAMPTZ NOT NULL,
    ended_at                 TIMESTAMPTZ,
    duration_seconds         BIGINT GENERATED ALWAYS AS (
        FLOOR(EXTRACT(EPOCH FROM (ended_at - started_at)))::BIGINT
    ) STORED,
    connection_quality       VARCHAR(16) CHECK (connection_quality IN ('excellent', 'good', 'fair', 'poor')),
    crisis_detected          BOOLEAN     NOT NULL DEFAULT FALSE,
    transcript_message_count BIGINT      NOT NULL DEFAULT 0 CHECK (transcript_message_count >= 0),
    -- Set when the student deletes the session; its transcript is erased at the same time.
    deleted_at               TIMESTAMPTZ,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT room_name_length CHECK (length(room_name) BETWEEN 1 AND 255),
    CONSTRAINT ended_after_started CHECK (ended_at IS NULL OR ended_at >= started_at)
);

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
    id              UUID        NOT NULL PRIMARY KEY,
    session_id      UUID        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    speaker         VARCHAR(20) NOT NULL CHECK (speaker IN ('student', 'counselor')),
    -- AES-256-GCM: 12-byte nonce || ciphertext || 16-byte tag. Never plain text.
    text_encrypted  BYTEA       NOT NULL CHECK (length(text_encrypted) >= 28),
    is_final        BOOLEAN     NOT NULL DEFAULT TRUE,
    sequence_number BIGINT      NOT NULL CHECK (sequence_number >= 0),
    "timestamp"     TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- Also serves as the (session_id, sequence_number) index for reading a transcript in order.
    CONSTRAINT transcript_messages_session_sequence_key UNIQUE (session_id, sequence_number)
);

CREATE INDEX idx_transcript_timestamp ON transcript_messages ("timestamp");

CREATE TABLE crisis_events (
    id                 UUID        NOT NULL PRIMARY KEY,
    session_id         UUID        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    message_sequence   BIGINT      NOT NULL CHECK (message_sequence >= 0),
    level              VARCHAR(16) NOT NULL CHECK (level IN ('concern', 'crisis')),
    signal             VARCHAR(50) NOT NULL CHECK (length(signal) >= 1),
    flagged_for_review BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_crisis_session ON crisis_events (session_id);
CREATE INDEX idx_crisis_review ON crisis_events (flagged_for_review) WHERE flagged_for_review = TRUE;

CREATE TABLE audit_log (
    id            UUID         NOT NULL PRIMARY KEY,
    user_id       UUID         REFERENCES users (id) ON DELETE SET NULL,
    action        VARCHAR(100) NOT NULL,
    resource_type VARCHAR(50)  NOT NULL,
    resource_id   UUID         NOT NULL,
    ip_address    VARCHAR(45),
    user_agent    TEXT,
    "timestamp"   TIMESTAMPTZ  NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_audit_user ON audit_log (user_id, "timestamp" DESC);
CREATE INDEX idx_audit_resource ON audit_log (resource_type, resource_id);
