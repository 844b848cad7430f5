package store

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/cofferhq/coffer/internal/coffer"
)

// ErrVersionExists is returned (wrapped) by InsertDataKey when the key
// version is already stored: another node made it first.
var ErrVersionExists = fmt.Errorf("%w: %w", coffer.ErrKeyVersionExists, ErrConflict)

// DataKeys returns every stored version of a data key.
func (db *DB) DataKeys(ctx context.Context, keyID string) ([]coffer.DataKey, error) {
	rs, err := db.read.query(ctx,
		`SELECT version, wrapped, state, created_at, uses, rewrap_uses FROM data_keys WHERE key_id = $1 ORDER BY version`, keyID)
	if err != nil {
		return nil, fmt.Errorf("store: data keys: %w", err)
	}
	defer rs.Close()
	var out []coffer.DataKey
	for rs.Next() {
		var (
			v, at, uses, rewrap int64
			k                   = coffer.DataKey{KeyID: keyID}
		)
		if err := rs.Scan(&v, &k.Wrapped, &k.State, &at, &uses, &rewrap); err != nil {
			return nil, fmt.Errorf("store: data keys: %w", err)
		}
		k.Version, k.Created = uint32(v), fromMicros(at) // #nosec G115 -- versions are stored from uint32
		k.Uses, k.RewrapUses = counts(uses, rewrap)
		out = append(out, k)
	}
	return out, rs.Err()
}

// counts converts stored use counts, clamped to non-negative.
func counts(uses, rewrap int64) (uint64, uint64) {
	return uint64(max(uses, 0)), uint64(max(rewrap, 0)) // #nosec G115 -- clamped to non-negative
}

// InsertDataKey stores a new wrapped key version; an error wrapping
// ErrVersionExists if that version exists.
func (db *DB) InsertDataKey(ctx context.Context, k coffer.DataKey) error {
	_, err := db.write.exec(ctx,
		`INSERT INTO data_keys (key_id, version, wrapped, state, created_at) VALUES ($1, $2, $3, $4, $5)`,
		k.KeyID, int64(k.Version), nonNilBytes(k.Wrapped), k.State, micros(k.Created))
	if errors.Is(err, ErrConflict) {
		return ErrVersionExists
	}
	if err != nil {
		return fmt.Errorf("store: insert data key: %w", err)
	}
	return nil
}

// SetDataKeyState changes the state of one key version.
func (db *DB) SetDataKeyState(ctx context.Context, keyID string, version uint32, state string) error {
	n, err := db.write.exec(ctx, `UPDATE data_keys SET state = $1 WHERE key_id = $2 AND version = $3`,
		state, keyID, int64(version))
	if err != nil {
		return fmt.Errorf("store: set data key state: %w", err)
	}
	if n == 0 {
		return notFound("data key")
	}
	return nil
}

// AddDataKeyUses adds uses to the count of values sealed under one key
// version (coffer.DataKey.Uses) and rewrapUses, the part of them that a
// rewrap made, to its rewrap count (coffer.DataKey.RewrapUses), in one
// statement, so that every node can add its own counts concurrently and
// the rewrap count never passes the count. rewrapUses must be at most
// uses. A version that does not exist (any more) is not an error: there
// is nothing left to count.
func (db *DB) AddDataKeyUses(ctx context.Context, keyID string, version uint32, uses, rewrapUses uint64) error {
	if uses == 0 {
		if rewrapUses != 0 {
			return fmt.Errorf("store: add data key uses: %d rewrap uses out of 0 uses", rewrapUses)
		}
		return nil
	}
	if uses > math.MaxInt64 {
		return fmt.Errorf("store: add data key uses: count %d out of range", uses)
	}
	if rewrapUses > uses {
		return fmt.Errorf("store: add data key uses: %d rewrap uses out of %d uses", rewrapUses, uses)
	}
	_, err := db.write.exec(ctx, `UPDATE data_keys SET uses = uses + $1, rewrap_uses = rewrap_uses + $2
		WHERE key_id = $3 AND version = $4`,
		int64(uses), int64(rewrapUses), keyID, int64(version)) // #nosec G115 -- rewrapUses <= uses <= MaxInt64, checked above
	if err != nil {
		return fmt.Errorf("store: add data key uses: %w", err)
	}
	return nil
}

// SetDataKeyUses sets the use count of one version to uses and its
// rewrap count to 0 (keyring.UseResetStore: the count of wraps under a
// new root key, kept on the root check key). A version that does not
// exist is not an error.
func (db *DB) SetDataKeyUses(ctx context.Context, keyID string, version uint32, uses uint64) error {
	if uses > math.MaxInt64 {
		return fmt.Errorf("store: set data key uses: count %d out of range", uses)
	}
	_, err := db.write.exec(ctx, `UPDATE data_keys SET uses = $1, rewrap_uses = 0 WHERE key_id = $2 AND version = $3`,
		int64(uses), keyID, int64(version)) // #nosec G115 -- uses <= MaxInt64, checked above
	if err != nil {
		return fmt.Errorf("store: set data key uses: %w", err)
	}
	return nil
}

// DueDataKeys returns the current version — the highest active one — of
// each key id that matches q and is not destroyed, when that version is
// due (older than q.CreatedBefore or used more than q.UsesOver times), in
// key id order, at most q.Limit of them; Wrapped is left out, Uses and
// RewrapUses are filled (whether a rotation by uses would help is the
// caller's call: lifecycle.RotationPolicy.Due). Page by
// passing the last key id returned as q.After. It reads the whole
// data_keys table: run it every few minutes, not per request.
func (db *DB) DueDataKeys(ctx context.Context, q coffer.DueKeyQuery) ([]coffer.DataKey, error) {
	if q.Limit < 1 {
		return nil, errors.New("store: due data keys: limit must be at least 1")
	}
	before := int64(math.MinInt64) // created_at < MinInt64 never holds
	if !q.CreatedBefore.IsZero() {
		before = micros(q.CreatedBefore)
	}
	usesOver := int64(math.MaxInt64) // uses > MaxInt64 never holds
	if q.UsesOver > 0 && q.UsesOver < math.MaxInt64 {
		usesOver = int64(q.UsesOver) // #nosec G115 -- checked against MaxInt64
	}
	rs, err := db.read.query(ctx, `SELECT d.key_id, d.version, d.state, d.created_at, d.uses, d.rewrap_uses FROM data_keys d
		WHERE d.state = $1 AND substr(d.key_id, 1, $2) = $3 AND d.key_id > $4
		AND (d.created_at < $5 OR d.uses > $6)
		AND NOT EXISTS (SELECT 1 FROM data_keys n WHERE n.key_id = d.key_id
			AND n.version > d.version AND n.state = $1)
		ORDER BY d.key_id LIMIT $7`,
		coffer.KeyActive, int64(len(q.Prefix)), q.Prefix, q.After, before, usesOver, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("store: due data keys: %w", err)
	}
	defer rs.Close()
	var out []coffer.DataKey
	for rs.Next() {
		var (
			k                   coffer.DataKey
			v, at, uses, rewrap int64
		)
		if err := rs.Scan(&k.KeyID, &v, &k.State, &at, &uses, &rewrap); err != nil {
			return nil, fmt.Errorf("store: due data keys: %w", err)
		}
		k.Version, k.Created = uint32(v), fromMicros(at) // #nosec G115 -- stored from uint32
		k.Uses, k.RewrapUses = counts(uses, rewrap)
		out = append(out, k)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("store: due data keys: %w", err)
	}
	return out, nil
}

// DestroyDataKeys erases the wrapped material of every version of a key and
// marks them destroyed (crypto-shredding). It is not an error if none exist.
func (db *DB) DestroyDataKeys(ctx context.Context, keyID string) error {
	_, err := db.write.exec(ctx, `UPDATE data_keys SET wrapped = $1, state = $2 WHERE key_id = $3`,
		[]byte{}, coffer.KeyDestroyed, keyID)
	if err != nil {
		return fmt.Errorf("store: destroy data keys: %w", err)
	}
	return nil
}

// DataKeysAfter pages through every stored data key (all states, wrapped
// bytes included) in (key_id, version) order after the given position.
func (db *DB) DataKeysAfter(ctx context.Context, keyID string, version uint32, limit int) ([]coffer.DataKey, error) {
	rs, err := db.read.query(ctx, `SELECT key_id, version, wrapped, state, created_at FROM data_keys
		WHERE key_id > $1 OR (key_id = $1 AND version > $2) ORDER BY key_id, version LIMIT $3`,
		keyID, int64(version), limit)
	if err != nil {
		return nil, fmt.Errorf("store: data keys page: %w", err)
	}
	defer rs.Close()
	var out []coffer.DataKey
	for rs.Next() {
		var (
			k     coffer.DataKey
			v, at int64
		)
		if err := rs.Scan(&k.KeyID, &v, &k.Wrapped, &k.State, &at); err != nil {
			return nil, fmt.Errorf("store: data keys page: %w", err)
		}
		k.Version, k.Created = uint32(v), fromMicros(at) // #nosec G115 -- stored from uint32
		out = append(out, k)
	}
	return out, rs.Err()
}

// ErrWrappedChanged is wrapped by ReplaceWrapped when the row no longer
// holds oldWrapped (or was destroyed); it is the keyring's ErrWrappedChanged.
var ErrWrappedChanged = coffer.ErrWrappedKeyChanged

// ReplaceWrapped swaps one key version's wrapped bytes, only if they are
// still oldWrapped and the version is not destroyed (compare-and-swap).
func (db *DB) ReplaceWrapped(ctx context.Context, keyID string, version uint32, oldWrapped, newWrapped []byte) error {
	n, err := db.write.exec(ctx, `UPDATE data_keys SET wrapped = $1
		WHERE key_id = $2 AND version = $3 AND wrapped = $4 AND state <> $5`,
		newWrapped, keyID, int64(version), oldWrapped, coffer.KeyDestroyed)
	if err != nil {
		return fmt.Errorf("store: replace wrapped key: %w", err)
	}
	if n == 0 {
		return ErrWrappedChanged
	}
	return nil
}
