-- +goose Up
-- Records become tamper-evident (issue #16.2): revision counts a record's
-- writes and is bound into each value's AAD, so a value from an earlier
-- revision does not open; meta_seal authenticates the record's metadata
-- (owner, subject, key, canary, times, revision) and its field set under
-- the record's key. Records written before keep revision 0 and no seal:
-- they stay readable, and the rewrap job (scheduled below) or their next
-- write moves them to the new format.
ALTER TABLE records ADD COLUMN revision INTEGER NOT NULL DEFAULT 0 CHECK (revision >= 0);
ALTER TABLE records ADD COLUMN meta_seal BLOB;
UPDATE jobs SET state = '{"done":false}' WHERE name = 'rewrap';

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
