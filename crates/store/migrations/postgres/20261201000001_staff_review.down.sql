DROP INDEX IF EXISTS idx_crisis_open;
DROP INDEX IF EXISTS idx_crisis_created;
ALTER TABLE crisis_events DROP COLUMN IF EXISTS review_outcome;
ALTER TABLE crisis_events DROP COLUMN IF EXISTS review_note;
ALTER TABLE crisis_events DROP COLUMN IF EXISTS reviewed_by;
ALTER TABLE crisis_events DROP COLUMN IF EXISTS reviewed_at;
ALTER TABLE crisis_events DROP COLUMN IF EXISTS decided_by;
ALTER TABLE users DROP COLUMN IF EXISTS role;
