-- Revocable access tokens. Every token carries the epoch of its account at the moment it was
-- minted; signing out, blocking the account or setting a new password moves the epoch on, and a
-- token minted under an older epoch is refused. Mirrors migrations/sqlite (same column, value and
-- constraint name). Existing accounts start at 0, the epoch that tokens minted before this
-- migration carry, so nobody is signed out by the upgrade itself.
ALTER TABLE users ADD COLUMN token_epoch BIGINT NOT NULL DEFAULT 0
    CONSTRAINT users_token_epoch_check CHECK (token_epoch >= 0);
