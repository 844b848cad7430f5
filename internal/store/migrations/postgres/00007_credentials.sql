-- +goose Up
-- username_key identifies a user account: the username under the PRECIS
-- UsernameCaseMapped profile (RFC 8265: width-mapped, case-folded, NFC),
-- each cross-script look-alike letter mapped to the Latin one it mimics,
-- so that "alice", "Alice", "alice " and a Cyrillic "аlice" cannot be four
-- accounts. It is NULL for users made before this migration until a node
-- fills it on start (identity.Service.Start); a user whose key another
-- user already holds keeps NULL and is reached by its exact username.
ALTER TABLE users ADD COLUMN username_key TEXT;
CREATE UNIQUE INDEX users_by_username_key ON users (username_key);

-- A one-time MFA enrolment code issued by an admin (its SHA-256, "" for
-- none) and when it expires (micros since the epoch): a user whose roles
-- require MFA needs one to enrol, so that a stolen password alone cannot
-- enrol an attacker's authenticator.
ALTER TABLE users ADD COLUMN mfa_enrolment_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN mfa_enrolment_expires BIGINT NOT NULL DEFAULT 0;

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
