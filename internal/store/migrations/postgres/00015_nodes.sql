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

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
