-- +goose Up
-- uses counts the values sealed under each data key version (AES-GCM
-- encryptions with random nonces), flushed by every node, so keys are
-- rotated long before 2^32 encryptions (see keys.rotate_after_uses).
ALTER TABLE data_keys ADD COLUMN uses BIGINT NOT NULL DEFAULT 0;

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
