-- +goose Up
-- fpe_options records, with each format-preserving token, the options it
-- was made with (a bit set: 1 keeps a card's first six digits, 2 makes a
-- card token pass Luhn), so that detokenize reverses it with those and a
-- change of tokens.card_* in the configuration never changes what an
-- existing token means. Before this migration the options were not
-- configurable: every token was made with none, which is what the default
-- 0 records for the existing rows.
--
-- A column with a constant default rewrites no row; the app role's
-- table-level grants (coffer migrate) cover the new columns.
ALTER TABLE tokens ADD COLUMN fpe_options BIGINT NOT NULL DEFAULT 0 CHECK (fpe_options >= 0);

-- schema_version records the schema version of the Coffer that saved the policy
-- document, so that coffer migrate can tell a document written for an
-- older meaning of the policy language (before tokenize_linkable split
-- tokenize, here: 0) and rewrite it once (policy.Rewrites).
ALTER TABLE policy ADD COLUMN schema_version BIGINT NOT NULL DEFAULT 0 CHECK (schema_version >= 0);

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
