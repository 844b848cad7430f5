package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/coffer"
)

// ErrVersionExists is returned (wrapped) by InsertDataKey when the key
// version is already stored: another node made it first.
var ErrVersionExists = fmt.Errorf("data key version exists: %w", ErrConflict)

// DataKeys returns every stored version of a data key.
func (db *DB) DataKeys(ctx context.Context, keyID string) ([]coffer.DataKey, error) {
	rs, err := db.read.query(ctx,
		`SELECT version, wrapped, state, created_at FROM data_keys WHERE key_id = $1 ORDER BY version`, keyID)
	if err != nil {
		return nil, fmt.Errorf("store: data keys: %w", err)
	}
	defer rs.Close()
	var out []coffer.DataKey
	for rs.Next() {
		var (
			v, at int64
			k     = coffer.DataKey{KeyID: keyID}
		)
		if err := rs.Scan(&v, &k.Wrapped, &k.State, &at); err != nil {
			return nil, fmt.Errorf("store: data keys: %w", err)
		}
		k.Version, k.Created = uint32(v), fromMicros(at) // #nosec G115 -- versions are stored from uint32
		out = append(out, k)
	}
	return out, rs.Err()
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
// holds oldWrapped (or was destroyed): the keyring maps it to its own.
var ErrWrappedChanged = errors.New("store: wrapped data key changed")

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
