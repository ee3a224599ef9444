ALTER TABLE sessions DROP COLUMN rated_at;
ALTER TABLE sessions DROP COLUMN rating_comment_encrypted;
ALTER TABLE sessions DROP COLUMN rating;
