-- +goose Up
-- nodes is the cluster's membership: one row per node id, held by one
-- running process (instance, random per start) through a lease it renews
-- with each heartbeat. A node starting with an id whose lease another
-- instance still renews refuses to start, so two live nodes never share an
-- id (and never write one audit chain). A node that stops releases its
-- lease (lease_until = 0); its row stays, for GET /v1/sys/nodes and so
-- that its id is not mistaken for a new one. Times are microseconds.
--
-- The migration only adds a table: nodes of the previous schema version
-- run unchanged against it (see schema.compatible_from in meta).
CREATE TABLE nodes (
    node           TEXT PRIMARY KEY,
    instance       TEXT NOT NULL,
    host           TEXT NOT NULL,
    version        TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    started_at     BIGINT NOT NULL,
    heartbeat_at   BIGINT NOT NULL,
    lease_until    BIGINT NOT NULL
);

-- Changes other nodes cache are announced on the channel
-- coffer_changes_SCHEMA (NOTIFY, delivered at commit), the payload naming
-- the table; each node LISTENs and reloads what it caches of that table
-- (docs/cluster.md). Statement-level triggers: one notification per
-- statement (PostgreSQL folds equal ones within a transaction). Data key
-- use counts (data_keys.uses, rewrap_uses) change every few seconds and
-- are not cached: only a new version, a state or a rewrap announces.
-- +goose StatementBegin
CREATE FUNCTION coffer_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(left('coffer_changes_' || TG_TABLE_SCHEMA, 63), TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER policy_notify AFTER INSERT OR UPDATE OR DELETE ON policy FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();
CREATE TRIGGER revoked_tokens_notify AFTER INSERT OR UPDATE OR DELETE ON revoked_tokens FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();
CREATE TRIGGER suspensions_notify AFTER INSERT OR UPDATE OR DELETE ON suspensions FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();
CREATE TRIGGER clients_notify AFTER INSERT OR UPDATE OR DELETE ON clients FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();
CREATE TRIGGER users_notify AFTER INSERT OR DELETE OR UPDATE OF roles, attributes, disabled ON users FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();
CREATE TRIGGER collections_notify AFTER INSERT OR UPDATE OR DELETE ON collections FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();
CREATE TRIGGER signing_keys_notify AFTER INSERT OR UPDATE OR DELETE ON signing_keys FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();
CREATE TRIGGER transit_keys_notify AFTER INSERT OR DELETE OR UPDATE OF min_decryption_version, latest_version, deletable, auto_rotate_s ON transit_keys FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();
CREATE TRIGGER data_keys_notify AFTER INSERT OR DELETE OR UPDATE OF wrapped, state ON data_keys FOR EACH STATEMENT EXECUTE FUNCTION coffer_notify_change();

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
