-- +goose Up
-- rewrap_uses counts the part of uses (every value sealed under the
-- version, 00002) that the rewrap after a rotation made, moving values
-- sealed under an older version to this one. Automatic rotation by use
-- count (keys.rotate_after_uses) needs it: a key holding more values than
-- the bound fills its new version with its own values as soon as the
-- rewrap runs, and rotating it again would only reseal them again, at
-- every check, forever. Both counts are added in one UPDATE, so
-- rewrap_uses never exceeds uses.
--
-- A column with a constant default rewrites no row; the app role's
-- table-level SELECT and UPDATE on data_keys (granted by coffer migrate)
-- cover the new column.
ALTER TABLE data_keys ADD COLUMN rewrap_uses BIGINT NOT NULL DEFAULT 0 CHECK (rewrap_uses >= 0);

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
