ALTER TABLE sessions DROP COLUMN IF EXISTS rated_at;
ALTER TABLE sessions DROP COLUMN IF EXISTS rating_comment_encrypted;
ALTER TABLE sessions DROP COLUMN IF EXISTS rating;
