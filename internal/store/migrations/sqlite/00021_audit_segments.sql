-- +goose Up
-- audit_segments records each sealed segment of an audit chain (issue #24)
-- that was written to the audit archive, fsynced and read back verified.
-- Only then may its events leave audit_events and audit_log: the append-only
-- triggers on DELETE are replaced by one that refuses any row not covered by a
-- verified segment. UPDATE stays refused on both audit tables, and
-- checkpoints are never deleted (a pruned chain is verified from the
-- signed checkpoint at its boundary). A segment row is never deleted,
-- and only its pruned_at may change, once.
CREATE TABLE audit_segments (
    node        TEXT NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    prev_hash   TEXT NOT NULL,
    head_hash   TEXT NOT NULL,
    first_time  INTEGER NOT NULL,
    last_time   INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    verified_at INTEGER NOT NULL CHECK (verified_at > 0),
    pruned_at   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (node, first_seq),
    CHECK (last_seq >= first_seq AND first_seq >= 1)
);
CREATE INDEX audit_segments_time ON audit_segments(last_time);

CREATE TRIGGER audit_segments_no_delete BEFORE DELETE ON audit_segments
BEGIN SELECT RAISE(ABORT, 'audit_segments is append-only'); END;
CREATE TRIGGER audit_segments_update_pruned_only BEFORE UPDATE ON audit_segments
WHEN OLD.pruned_at <> 0 OR NEW.node IS NOT OLD.node OR NEW.first_seq IS NOT OLD.first_seq
  OR NEW.last_seq IS NOT OLD.last_seq OR NEW.prev_hash IS NOT OLD.prev_hash OR NEW.head_hash IS NOT OLD.head_hash
  OR NEW.first_time IS NOT OLD.first_time OR NEW.last_time IS NOT OLD.last_time OR NEW.bytes IS NOT OLD.bytes
  OR NEW.verified_at IS NOT OLD.verified_at
BEGIN SELECT RAISE(ABORT, 'audit_segments: only pruned_at may be set, once'); END;

DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_delete_archived_only BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_segments s WHERE s.node = OLD.node
                 AND OLD.seq BETWEEN s.first_seq AND s.last_seq)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only (only archived segments may be pruned)'); END;

DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_delete_archived_only BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_segments s WHERE s.node = OLD.node
                 AND OLD.seq BETWEEN s.first_seq AND s.last_seq)
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (only archived segments may be pruned)'); END;

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
