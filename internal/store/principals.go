package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// TokenState is what the store says, at the moment of a request, about an
// access token that verified: everything that can end a token before its
// exp and that another node may have changed.
type TokenState struct {
	// Generation is the principal's stored generation; 0 when it does not
	// exist (deleted) or is disabled.
	Generation int64
	// Revoked is true when the token's jti was revoked.
	Revoked bool
	// KeyLive is true when the key that signed it is still stored and
	// before its NotAfter at now (a revoked signing key is deleted).
	KeyLive bool
}

// The TokenState queries, one per principal kind: a single round trip of
// three primary-key lookups.
const (
	clientStateSQL = `SELECT COALESCE((SELECT generation FROM clients WHERE id = $1 AND disabled = 0), 0),
	CASE WHEN EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $2) THEN 1 ELSE 0 END,
	CASE WHEN EXISTS (SELECT 1 FROM signing_keys WHERE kid = $3 AND not_after > $4) THEN 1 ELSE 0 END`
	userStateSQL = `SELECT COALESCE((SELECT generation FROM users WHERE id = $1 AND disabled = 0), 0),
	CASE WHEN EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $2) THEN 1 ELSE 0 END,
	CASE WHEN EXISTS (SELECT 1 FROM signing_keys WHERE kid = $3 AND not_after > $4) THEN 1 ELSE 0 END`
)

// TokenState reads, in one query, the generation of the principal
// (coffer.KindClient or coffer.KindUser) id, whether token jti is revoked
// and whether signing key kid is still live at now. Nodes call it for
// every request that carries a Coffer access token, so that a change made
// on any node is in force on every node at once; it is never cached.
func (db *DB) TokenState(ctx context.Context, kind, id, jti, kid string, now time.Time) (TokenState, error) {
	q := clientStateSQL
	switch kind {
	case coffer.KindClient:
	case coffer.KindUser:
		q = userStateSQL
	default:
		return TokenState{}, fmt.Errorf("store: token state: unknown principal kind")
	}
	var (
		st            TokenState
		revoked, live int64
	)
	if err := db.read.queryRow(ctx, q, id, jti, kid, micros(now)).Scan(&st.Generation, &revoked, &live); err != nil {
		return TokenState{}, fmt.Errorf("store: token state: %w", err)
	}
	st.Revoked, st.KeyLive = revoked != 0, live != 0
	return st, nil
}

// InsertActiveSigningKey stores k as the one active signing key and, in
// the same transaction, makes every other key inactive with its NotAfter
// brought forward to retireBy where it was later: a key rotated out
// verifies only the tokens it already signed, for as long as they live.
func (db *DB) InsertActiveSigningKey(ctx context.Context, k coffer.SigningKeyRecord, retireBy time.Time) error {
	return db.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `UPDATE signing_keys SET active = 0,
			not_after = CASE WHEN not_after > $1 THEN $1 ELSE not_after END`, micros(retireBy)); err != nil {
			return fmt.Errorf("store: signing keys: %w", err)
		}
		_, err := q.exec(ctx, `INSERT INTO signing_keys (kid, sealed, active, created_at, not_after)
			VALUES ($1, $2, 1, $3, $4)`, k.KID, k.Sealed, micros(k.CreatedAt), micros(k.NotAfter))
		if err != nil {
			return fmt.Errorf("store: insert signing key: %w", err)
		}
		return nil
	})
}

// ErrActiveSigningKey refuses to delete the active signing key: rotate
// first.
var ErrActiveSigningKey = errors.New("store: the signing key is active")

// DeleteSigningKey deletes an inactive signing key for good (a revoked,
// leaked one): ENOTFOUND if there is none, ErrActiveSigningKey (wrapped
// in a coffer ECONFLICT) if it is the active one.
func (db *DB) DeleteSigningKey(ctx context.Context, kid string) error {
	n, err := db.write.exec(ctx, `DELETE FROM signing_keys WHERE kid = $1 AND active = 0`, kid)
	if err != nil {
		return fmt.Errorf("store: delete signing key: %w", err)
	}
	if n == 1 {
		return nil
	}
	var act int64
	err = db.read.queryRow(ctx, `SELECT active FROM signing_keys WHERE kid = $1`, kid).Scan(&act)
	if errors.Is(err, ErrNotFound) {
		return notFound("signing key")
	}
	if err != nil {
		return fmt.Errorf("store: delete signing key: %w", err)
	}
	return &coffer.Error{Code: coffer.ECONFLICT, Message: "the signing key is the active one; rotate it first",
		Cause: ErrActiveSigningKey}
}
