-- Staff on duty: an account role, and the human review of crisis events. Mirrors
-- migrations/sqlite (same columns, values and constraint names).

-- Every existing account is a student; staff are made on purpose (`counsel user add --role staff`).
ALTER TABLE users ADD COLUMN role VARCHAR(16) NOT NULL DEFAULT 'student'
    CONSTRAINT users_role_check CHECK (role IN ('student', 'staff'));

-- Which part of the safety check decided the event; NULL for events recorded before this existed.
ALTER TABLE crisis_events ADD COLUMN decided_by VARCHAR(8)
    CONSTRAINT crisis_decided_by_check CHECK (decided_by IS NULL OR decided_by IN ('rule', 'model', 'both'));
ALTER TABLE crisis_events ADD COLUMN reviewed_at TIMESTAMPTZ;
-- The reviewer's account; kept NULL if that account is later removed (the review itself stays).
ALTER TABLE crisis_events ADD COLUMN reviewed_by UUID REFERENCES users (id) ON DELETE SET NULL;
ALTER TABLE crisis_events ADD COLUMN review_note TEXT
    CONSTRAINT crisis_review_note_length CHECK (review_note IS NULL OR length(review_note) <= 2000);
-- An event is reviewed exactly when it has an outcome and a review time.
ALTER TABLE crisis_events ADD COLUMN review_outcome VARCHAR(32)
    CONSTRAINT crisis_review_complete CHECK (
        (review_outcome IS NULL AND reviewed_at IS NULL)
        OR (review_outcome IN ('contacted_student', 'referred', 'false_alarm', 'no_action_needed', 'escalated_emergency')
            AND reviewed_at IS NOT NULL)
    );

-- The review queue pages newest first; the open queue is the one staff watch.
CREATE INDEX idx_crisis_created ON crisis_events (created_at DESC, id DESC);
CREATE INDEX idx_crisis_open ON crisis_events (created_at DESC, id DESC) WHERE reviewed_at IS NULL;
