-- The student's rating of a finished session: 1 to 5, once, with an optional comment. The
-- comment is as private as the transcript, so it is stored the same way (AES-256-GCM: 12-byte
-- nonce || ciphertext || 16-byte tag, never plain text) and erased with the transcript (deletion,
-- retention); the score and its time stay with the session's metadata. Mirrors
-- migrations/sqlite (same columns and constraint names).
ALTER TABLE sessions ADD COLUMN rating SMALLINT
    CONSTRAINT sessions_rating_range CHECK (rating IS NULL OR rating BETWEEN 1 AND 5);
ALTER TABLE sessions ADD COLUMN rating_comment_encrypted BYTEA
    CONSTRAINT sessions_rating_comment_encrypted CHECK (
        rating_comment_encrypted IS NULL OR length(rating_comment_encrypted) >= 28);
-- A session is rated exactly when it has a score and a time; a comment only beside a score.
ALTER TABLE sessions ADD COLUMN rated_at TIMESTAMPTZ
    CONSTRAINT sessions_rating_complete CHECK (
        (rating IS NULL AND rated_at IS NULL AND rating_comment_encrypted IS NULL)
        OR (rating IS NOT NULL AND rated_at IS NOT NULL));
