ALTER TABLE sessions DROP COLUMN end_reason;
