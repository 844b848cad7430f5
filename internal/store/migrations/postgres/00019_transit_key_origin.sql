-- +goose Up
-- Where a transit key's material came from (issue #23): origin is '' for
-- a key Coffer made, 'byok' for one imported wrapped (POST
-- /v1/keys/{name}/import), 'vault' for one imported from HashiCorp Vault
-- (POST /v1/keys/{name}/import_vault). vault_latest_version is the newest
-- version brought from Vault (0 for every other key): the versions from the
-- key's first one up to it also open the ciphertexts Vault itself made.
-- Both are written once, when the key is made, and never changed.
-- Columns with a constant default rewrite no row; the app role's
-- table-level grants cover them.
ALTER TABLE transit_keys ADD COLUMN origin TEXT NOT NULL DEFAULT '' CHECK (origin IN ('', 'byok', 'vault'));
ALTER TABLE transit_keys ADD COLUMN vault_latest_version BIGINT NOT NULL DEFAULT 0 CHECK (vault_latest_version >= 0);

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
