-- +goose Up
-- Audit events in their compact form (issue #24): audit_events kept ~1,000
-- bytes per event (a JSON body repeating hash and prev_hash as hex, which
-- the row also kept as hex columns). audit_log keeps each field once: the
-- columns queries filter and order on (node, seq, time, principal,
-- action), the hash as 32 bytes, and the rest of the event in body, the
-- audit log's compact encoding (its first byte the format,
-- audit.FormatCompact). The chain still covers the whole event: audit
-- verify re-derives it from the columns and the body.
--
-- Events written before stay in audit_events as they are and verify as
-- they always did; a node's chain goes on from its last event there into
-- audit_log (prev_hash links across). Nothing is copied or rewritten.
--
-- The fixed-width columns come first (no alignment padding). The primary
-- key serves verify and the writer's head; the time index serves
-- GET /v1/audit/events ((time, node, seq) order, since, after), principal
-- and action filtering the rows read in that order, as before. Both are
-- appended at their right end, so their pages are filled completely.
CREATE TABLE audit_log (
    seq       BIGINT NOT NULL,
    time      BIGINT NOT NULL,
    node      TEXT NOT NULL,
    principal TEXT NOT NULL,
    action    TEXT NOT NULL,
    hash      BYTEA NOT NULL,
    body      BYTEA NOT NULL,
    PRIMARY KEY (node, seq) WITH (fillfactor = 100)
);
CREATE INDEX audit_log_time ON audit_log(time) WITH (fillfactor = 100);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION coffer_append_only();

-- Nodes of schema 19 may still serve during a rolling upgrade: each keeps
-- appending its own chain to audit_events, and goes on in audit_log once
-- upgraded (a node's chain is read from audit_events, then audit_log).

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
