-- +goose Up
-- Audit events in their compact form (issue #24): audit_events kept ~1,000
-- bytes per event (a JSON body repeating hash and prev_hash as hex, which
-- the row also kept as hex columns, a rowid and a second index for its
-- primary key). audit_log keeps each field once: the columns queries
-- filter and order on (node, seq, time, principal, action), the hash as
-- 32 bytes, and the rest of the event in body, the audit log's compact
-- encoding (its first byte the format, audit.FormatCompact). The chain
-- still covers the whole event: audit verify re-derives it from the
-- columns and the body.
--
-- Events written before stay in audit_events as they are and verify as
-- they always did; a node's chain goes on from its last event there into
-- audit_log (prev_hash links across). Nothing is copied or rewritten.
--
-- WITHOUT ROWID: the table is its (node, seq) primary key's B-tree, so no
-- second index repeats node and seq. The time index serves
-- GET /v1/audit/events ((time, node, seq) order, since, after); principal
-- and action filter rows read in that order, as before; verify and the
-- writer's head read by (node, seq).
CREATE TABLE audit_log (
    node      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    time      INTEGER NOT NULL,
    principal TEXT NOT NULL,
    action    TEXT NOT NULL,
    hash      BLOB NOT NULL,
    body      BLOB NOT NULL,
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;
CREATE INDEX audit_log_time ON audit_log(time);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Nodes of schema 19 may still serve during a rolling upgrade: each keeps
-- appending its own chain to audit_events, and goes on in audit_log once
-- upgraded (a node's chain is read from audit_events, then audit_log).

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
