-- +goose Up
-- audit_segments records each sealed segment of an audit chain (issue #24)
-- that was written to the audit archive, fsynced and read back verified.
-- Only then may its events leave audit_events and audit_log: their
-- append-only triggers are split, UPDATE still refused, DELETE refused for any row not covered by
-- a verified segment. Checkpoints are never deleted (a pruned chain is
-- verified from the signed checkpoint at its boundary). A segment row is
-- never deleted, and only its pruned_at may change, once.
CREATE TABLE audit_segments (
    node        TEXT NOT NULL,
    first_seq   BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL,
    prev_hash   TEXT NOT NULL,
    head_hash   TEXT NOT NULL,
    first_time  BIGINT NOT NULL,
    last_time   BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    verified_at BIGINT NOT NULL CHECK (verified_at > 0),
    pruned_at   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (node, first_seq),
    CHECK (last_seq >= first_seq AND first_seq >= 1)
);
CREATE INDEX audit_segments_time ON audit_segments(last_time);

-- +goose StatementBegin
CREATE FUNCTION coffer_audit_delete_archived_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_segments s WHERE s.node = OLD.node
                   AND OLD.seq BETWEEN s.first_seq AND s.last_seq) THEN
        RAISE EXCEPTION '% is append-only (only archived segments may be pruned)', TG_TABLE_NAME;
    END IF;
    RETURN OLD;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION coffer_audit_segment_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.pruned_at <> 0 OR (NEW.node, NEW.first_seq, NEW.last_seq, NEW.prev_hash, NEW.head_hash,
        NEW.first_time, NEW.last_time, NEW.bytes, NEW.verified_at) IS DISTINCT FROM
       (OLD.node, OLD.first_seq, OLD.last_seq, OLD.prev_hash, OLD.head_hash,
        OLD.first_time, OLD.last_time, OLD.bytes, OLD.verified_at) THEN
        RAISE EXCEPTION 'audit_segments: only pruned_at may be set, once';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

DROP TRIGGER audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION coffer_append_only();
CREATE TRIGGER audit_events_delete_archived_only BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION coffer_audit_delete_archived_only();
DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION coffer_append_only();
CREATE TRIGGER audit_log_delete_archived_only BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION coffer_audit_delete_archived_only();
CREATE TRIGGER audit_segments_append_only BEFORE DELETE ON audit_segments
    FOR EACH ROW EXECUTE FUNCTION coffer_append_only();
CREATE TRIGGER audit_segments_update_pruned_only BEFORE UPDATE ON audit_segments
    FOR EACH ROW EXECUTE FUNCTION coffer_audit_segment_update();

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
