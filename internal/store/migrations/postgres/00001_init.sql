-- +goose Up
CREATE TABLE collections (
    name        TEXT PRIMARY KEY,
    schema_json TEXT NOT NULL,
    retention_s BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE records (
    collection  TEXT NOT NULL REFERENCES collections(name),
    id          TEXT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    key_id      TEXT NOT NULL,
    values_blob BYTEA NOT NULL,
    canary      BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    PRIMARY KEY (collection, id)
);
CREATE INDEX records_subject ON records(subject) WHERE subject <> '';
CREATE INDEX records_expires ON records(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX records_owner ON records(collection, owner);

CREATE TABLE record_index (
    collection TEXT NOT NULL,
    field      TEXT NOT NULL,
    mac        BYTEA NOT NULL,
    record_id  TEXT NOT NULL,
    version    BIGINT NOT NULL,
    PRIMARY KEY (collection, field, mac, record_id)
);
CREATE INDEX record_index_record ON record_index(collection, record_id);

CREATE TABLE data_keys (
    key_id     TEXT NOT NULL,
    version    BIGINT NOT NULL,
    wrapped    BYTEA NOT NULL,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, version)
);

CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    roles       TEXT NOT NULL,
    attributes  TEXT NOT NULL,
    disabled    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    roles           TEXT NOT NULL,
    attributes      TEXT NOT NULL,
    totp_secret     BYTEA,
    totp_confirmed  BIGINT NOT NULL DEFAULT 0,
    totp_last_step  BIGINT NOT NULL DEFAULT 0,
    recovery_hashes TEXT NOT NULL DEFAULT '[]',
    disabled        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    active     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    not_after  BIGINT NOT NULL
);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE auth_failures (
    key          TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE policy (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    BIGINT NOT NULL,
    format     TEXT NOT NULL,
    source     BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    mac         BYTEA PRIMARY KEY,
    type        TEXT NOT NULL,
    mode        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    sealed      BYTEA NOT NULL,
    canary      BIGINT NOT NULL DEFAULT 0,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_events (
    node       TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    id         TEXT NOT NULL,
    time       BIGINT NOT NULL,
    principal  TEXT NOT NULL,
    action     TEXT NOT NULL,
    body       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE INDEX audit_events_time ON audit_events(time);

CREATE TABLE audit_checkpoints (
    node      TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    hash      TEXT NOT NULL,
    time      BIGINT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (node, seq)
);

CREATE TABLE security_events (
    id        TEXT PRIMARY KEY,
    time      BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    principal TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX security_events_time ON security_events(time);

CREATE TABLE detect_counts (
    key          TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE TABLE suspensions (
    principal TEXT PRIMARY KEY,
    until     BIGINT NOT NULL,
    reason    TEXT NOT NULL
);

CREATE TABLE transit_keys (
    name                    TEXT PRIMARY KEY,
    created_at              BIGINT NOT NULL,
    min_decryption_version  BIGINT NOT NULL,
    latest_version          BIGINT NOT NULL,
    deletable               BIGINT NOT NULL,
    auto_rotate_s           BIGINT NOT NULL,
    encryptions             BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE jobs (
    name       TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    lease_by   TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- +goose StatementBegin
-- The audit tables are append-only for everyone: the chain catches what an
-- owner does anyway, and coffer migrate grants the app role INSERT/SELECT only.
CREATE FUNCTION coffer_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION coffer_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION coffer_append_only();

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
