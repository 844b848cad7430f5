-- +goose Up
-- key_version is the version of the audit signing key (audit/signing) that
-- signed a checkpoint; the checkpoints written before audit keys could
-- rotate were all signed by version 1. An event's HMAC key version is kept
-- in its body, the JSON that verification reads and the chain covers, so
-- audit_events needs no column (a second copy could only disagree).
--
-- Adding a column rewrites no row and fires no UPDATE trigger: the
-- append-only triggers stay as they are.
ALTER TABLE audit_checkpoints ADD COLUMN key_version INTEGER NOT NULL DEFAULT 1 CHECK (key_version >= 1);

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
