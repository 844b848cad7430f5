-- +goose Up
CREATE TABLE collections (
    name        TEXT PRIMARY KEY,
    schema_json TEXT NOT NULL,
    retention_s INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE records (
    collection  TEXT NOT NULL REFERENCES collections(name),
    id          TEXT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    key_id      TEXT NOT NULL,
    values_blob BLOB NOT NULL,
    canary      INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    PRIMARY KEY (collection, id)
);
CREATE INDEX records_subject ON records(subject) WHERE subject <> '';
CREATE INDEX records_expires ON records(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX records_owner ON records(collection, owner);

CREATE TABLE record_index (
    collection TEXT NOT NULL,
    field      TEXT NOT NULL,
    mac        BLOB NOT NULL,
    record_id  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    PRIMARY KEY (collection, field, mac, record_id)
);
CREATE INDEX record_index_record ON record_index(collection, record_id);

CREATE TABLE data_keys (
    key_id     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    wrapped    BLOB NOT NULL,
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
);

CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    roles       TEXT NOT NULL,
    attributes  TEXT NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    roles           TEXT NOT NULL,
    attributes      TEXT NOT NULL,
    totp_secret     BLOB,
    totp_confirmed  INTEGER NOT NULL DEFAULT 0,
    totp_last_step  INTEGER NOT NULL DEFAULT 0,
    recovery_hashes TEXT NOT NULL DEFAULT '[]',
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    sealed     BLOB NOT NULL,
    active     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    not_after  INTEGER NOT NULL
);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

CREATE TABLE auth_failures (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE policy (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    INTEGER NOT NULL,
    format     TEXT NOT NULL,
    source     BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE tokens (
    mac         BLOB PRIMARY KEY,
    type        TEXT NOT NULL,
    mode        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    sealed      BLOB NOT NULL,
    canary      INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_events (
    node       TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    id         TEXT NOT NULL,
    time       INTEGER NOT NULL,
    principal  TEXT NOT NULL,
    action     TEXT NOT NULL,
    body       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE INDEX audit_events_time ON audit_events(time);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

CREATE TABLE audit_checkpoints (
    node      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL,
    time      INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;

CREATE TABLE security_events (
    id        TEXT PRIMARY KEY,
    time      INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    principal TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX security_events_time ON security_events(time);

CREATE TABLE detect_counts (
    key          TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE TABLE suspensions (
    principal TEXT PRIMARY KEY,
    until     INTEGER NOT NULL,
    reason    TEXT NOT NULL
);

CREATE TABLE transit_keys (
    name                    TEXT PRIMARY KEY,
    created_at              INTEGER NOT NULL,
    min_decryption_version  INTEGER NOT NULL,
    latest_version          INTEGER NOT NULL,
    deletable               INTEGER NOT NULL,
    auto_rotate_s           INTEGER NOT NULL,
    encryptions             INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE jobs (
    name       TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    lease_by   TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
