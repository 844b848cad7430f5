-- +goose Up
-- key_version is the version of the audit signing key (audit/signing) that
-- signed a checkpoint; the checkpoints written before audit keys could
-- rotate were all signed by version 1. An event's HMAC key version is kept
-- in its body, the JSON that verification reads and the chain covers, so
-- audit_events needs no column (a second copy could only disagree).
--
-- A column with a constant default rewrites no row and fires no UPDATE
-- trigger: the append-only triggers stay as they are, and the app role's
-- table-level INSERT and SELECT (granted by coffer migrate) cover the new
-- column, still without UPDATE or DELETE.
ALTER TABLE audit_checkpoints ADD COLUMN key_version BIGINT NOT NULL DEFAULT 1 CHECK (key_version >= 1);

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
