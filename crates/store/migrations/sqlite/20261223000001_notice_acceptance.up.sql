-- A student's acceptance of the first-visit notice (what is recorded, who can see it, how long it
-- is kept, that the counselor is an AI, what happens in a crisis), once per account and wording:
-- the server's version is a digest of the words shown, so a new wording is asked for again. The
-- moment of acceptance is also in the audit log. Mirrors migrations/postgres (same table, columns
-- and constraint names).
CREATE TABLE notice_acceptances (
    user_id        BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    notice_version TEXT NOT NULL CONSTRAINT notice_version_length CHECK (length(notice_version) BETWEEN 1 AND 64),
    accepted_at    TEXT NOT NULL CHECK (unixepoch(accepted_at) IS NOT NULL),
    CONSTRAINT notice_acceptances_pkey PRIMARY KEY (user_id, notice_version)
) STRICT;
