package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

const idemCols = `principal, key, fingerprint, state, owner, instance, claim_until, status, content_type, body, created_at, expires_at`

// ClaimIdempotencyKey claims (principal, key) for the request described by
// c (state pending, owned by c.Owner until c.ClaimUntil), in one
// statement: when the key is new, its previous use expired, or a pending
// claim of the same request ran out (its node died before answering). It
// c.Instance names the claiming process (its node lease's instance): a
// pending claim whose process no longer holds a live node lease (it died
// mid-request) may be taken over at once, without waiting for ClaimUntil.
// It returns the claim and true, or the row as it stands and false: a
// finished answer to replay, a live pending claim, or another request's
// fingerprint.
func (db *DB) ClaimIdempotencyKey(ctx context.Context, c coffer.IdempotencyKey) (coffer.IdempotencyKey, bool, error) {
	n, err := db.write.exec(ctx, `INSERT INTO idempotency_keys (`+idemCols+`)
		VALUES ($1, $2, $3, 'pending', $4, $8, $5, 0, '', NULL, $6, $7)
		ON CONFLICT (principal, key) DO UPDATE SET fingerprint = $3, state = 'pending', owner = $4, instance = $8,
			claim_until = $5, status = 0, content_type = '', body = NULL, created_at = $6, expires_at = $7
		WHERE idempotency_keys.expires_at <= $6
			OR (idempotency_keys.state = 'pending' AND idempotency_keys.fingerprint = $3 AND (idempotency_keys.claim_until <= $6
				OR (idempotency_keys.instance <> '' AND NOT EXISTS (SELECT 1 FROM nodes
					WHERE nodes.instance = idempotency_keys.instance AND nodes.lease_until > $6))))`,
		c.Principal, c.Key, c.Fingerprint, c.Owner, micros(c.ClaimUntil), micros(c.CreatedAt), micros(c.ExpiresAt), c.Instance)
	if err != nil {
		return coffer.IdempotencyKey{}, false, fmt.Errorf("store: claim idempotency key: %w", err)
	}
	if n == 1 {
		c.State = coffer.IdempotencyPending
		return c, true, nil
	}
	cur, err := db.IdempotencyKey(ctx, c.Principal, c.Key)
	if errors.Is(err, ErrNotFound) {
		// Deleted (a failed create) between the two statements: try again.
		return db.ClaimIdempotencyKey(ctx, c)
	}
	return cur, false, err
}

// IdempotencyKey returns the row of (principal, key), or an error
// wrapping ErrNotFound.
func (db *DB) IdempotencyKey(ctx context.Context, principal, key string) (coffer.IdempotencyKey, error) {
	var (
		k                               coffer.IdempotencyKey
		claim, status, created, expires int64
		body                            []byte
	)
	err := db.write.queryRow(ctx, `SELECT `+idemCols+` FROM idempotency_keys WHERE principal = $1 AND key = $2`,
		principal, key).Scan(&k.Principal, &k.Key, &k.Fingerprint, &k.State, &k.Owner, &k.Instance, &claim, &status, &k.ContentType,
		&body, &created, &expires)
	if err != nil {
		if errors.Is(mapErr(err), ErrNotFound) {
			return k, notFound("idempotency key")
		}
		return k, fmt.Errorf("store: idempotency key: %w", mapErr(err))
	}
	k.ClaimUntil, k.CreatedAt, k.ExpiresAt = fromMicros(claim), fromMicros(created), fromMicros(expires)
	k.Status, k.Body = int(status), bytes.Clone(body)
	return k, nil
}

// CompleteIdempotencyKey records the answer of the request that claimed
// (principal, key) as owner; false when the claim is no longer owner's.
func (db *DB) CompleteIdempotencyKey(ctx context.Context, principal, key, owner string, status int, contentType string, body []byte) (bool, error) {
	n, err := db.write.exec(ctx, `UPDATE idempotency_keys SET state = 'done', status = $1, content_type = $2, body = $3
		WHERE principal = $4 AND key = $5 AND owner = $6 AND state = 'pending'`,
		status, contentType, body, principal, key, owner)
	if err != nil {
		return false, fmt.Errorf("store: complete idempotency key: %w", err)
	}
	return n == 1, nil
}

// ReleaseIdempotencyKey deletes owner's pending claim of (principal, key):
// the request failed and created nothing, so a retry runs it again.
func (db *DB) ReleaseIdempotencyKey(ctx context.Context, principal, key, owner string) error {
	if _, err := db.write.exec(ctx, `DELETE FROM idempotency_keys
		WHERE principal = $1 AND key = $2 AND owner = $3 AND state = 'pending'`, principal, key, owner); err != nil {
		return fmt.Errorf("store: release idempotency key: %w", err)
	}
	return nil
}

// PurgeIdempotencyKeys deletes up to limit keys expired at now, and any
// fingerprinted by a bare SHA-256 (32 bytes, before fingerprints were
// keyed MACs: they would let a reader of the table test guesses of the
// values a body held), and returns how many went.
func (db *DB) PurgeIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int64, error) {
	n, err := db.write.exec(ctx, `DELETE FROM idempotency_keys WHERE (principal, key) IN
		(SELECT principal, key FROM idempotency_keys WHERE expires_at <= $1 OR length(fingerprint) = 32 LIMIT $2)`, micros(now), limit)
	if err != nil {
		return 0, fmt.Errorf("store: purge idempotency keys: %w", err)
	}
	return n, nil
}
