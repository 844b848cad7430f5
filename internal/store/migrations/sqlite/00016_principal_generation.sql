-- +goose Up
-- generation counts the changes to a principal that must end the access
-- tokens it holds (issue #15.5): deleting or disabling it, rotating its
-- secret, changing its roles or attributes, resetting its MFA. Every
-- access token carries the generation it was issued under (the claim
-- coffer_gen), and a node refuses a token whose generation is not the
-- stored one, in the request, reading the store: so a change made on one
-- node ends the tokens on every node at once. A deleted principal has no
-- row and no generation: its tokens are refused too.
--
-- Existing rows start at 1, and a token without the claim (issued by a
-- node from before this migration, in a rolling upgrade) counts as
-- generation 1: valid while its principal is unchanged. Columns with a
-- constant default rewrite no row; the app role's table-level grants
-- cover them.
ALTER TABLE clients ADD COLUMN generation BIGINT NOT NULL DEFAULT 1 CHECK (generation >= 1);
ALTER TABLE users ADD COLUMN generation BIGINT NOT NULL DEFAULT 1 CHECK (generation >= 1);

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
