-- +goose Up
-- idempotency_keys keeps, per principal, the outcome of each create sent
-- with an Idempotency-Key header (issue #18.4), for 24 hours: a retry with
-- the same key and the same request gets the first answer again, and
-- creates nothing more. A row is claimed (state 'pending', owner: one
-- request, instance: the node process running it, until claim_until)
-- before the create runs, then completed with the answer (state 'done'),
-- or deleted when the create failed so that a retry runs it again. A
-- claim whose process lost its node lease (it died) may be taken over.
-- fingerprint is a SHA-256 of the method, path and body: the same key
-- with another request is refused. body is the answer, sealed under the
-- keyring (it may hold a client secret).
--
-- The migration only adds a table: nodes of the previous schema version
-- run unchanged against it (they ignore the header).
CREATE TABLE idempotency_keys (
    principal    TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,
    state        TEXT NOT NULL,
    owner        TEXT NOT NULL,
    instance     TEXT NOT NULL,
    claim_until  BIGINT NOT NULL,
    status       BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    body         BLOB,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
