package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
)

// SchemaVersions returns the highest migration applied to the database and
// the highest this binary embeds; they are equal once migrated. It only
// reads, so it serves a store opened with OpenReadOnly.
func (db *DB) SchemaVersions(ctx context.Context) (current, latest int64, err error) {
	p, err := db.provider()
	if err != nil {
		return 0, 0, err
	}
	current, latest, err = p.GetVersions(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("store: schema versions: %w", err)
	}
	return current, latest, nil
}

// SubjectKeyTombstones returns the ids of the subject keys ("subject/…")
// whose every stored version is destroyed, in key id order after the
// given id, at most limit: in a store restored from a backup, every
// subject key (see subjectKeyPrefix), and in any store, the erased subjects.
func (db *DB) SubjectKeyTombstones(ctx context.Context, after string, limit int) ([]string, error) {
	if limit < 1 {
		return nil, errors.New("store: subject key tombstones: limit must be at least 1")
	}
	rs, err := db.read.query(ctx, `SELECT key_id FROM data_keys
		WHERE substr(key_id, 1, $1) = $2 AND key_id > $3
		GROUP BY key_id HAVING COUNT(*) = SUM(CASE WHEN state = $4 THEN 1 ELSE 0 END)
		ORDER BY key_id LIMIT $5`,
		int64(len(subjectKeyPrefix)), subjectKeyPrefix, after, coffer.KeyDestroyed, limit)
	if err != nil {
		return nil, fmt.Errorf("store: subject key tombstones: %w", err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: subject key tombstones: %w", err)
		}
		out = append(out, id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("store: subject key tombstones: %w", err)
	}
	return out, nil
}

// DataKeysIn returns every stored version of the given key ids (wrapped
// bytes, state, creation time and use counts as stored), in (key_id,
// version) order, all read in one snapshot; key ids with no version are
// simply absent. One query per 256 ids. It only reads, so it serves a
// store opened with OpenReadOnly.
func (db *DB) DataKeysIn(ctx context.Context, keyIDs []string) ([]coffer.DataKey, error) {
	var out []coffer.DataKey
	err := db.snapshot(ctx, func(q querier) error {
		const per = 256
		for start := 0; start < len(keyIDs); start += per {
			chunk := keyIDs[start:min(start+per, len(keyIDs))]
			var sb strings.Builder
			args := make([]any, 0, len(chunk))
			sb.WriteString(`SELECT key_id, version, wrapped, state, created_at, uses, rewrap_uses FROM data_keys WHERE key_id IN (`)
			for i, id := range chunk {
				if i > 0 {
					sb.WriteByte(',')
				}
				// Only placeholders are written into the statement.
				sb.WriteString("$" + strconv.Itoa(i+1))
				args = append(args, id)
			}
			sb.WriteString(`) ORDER BY key_id, version`)
			rs, err := q.query(ctx, sb.String(), args...)
			if err != nil {
				return fmt.Errorf("store: data keys: %w", err)
			}
			for rs.Next() {
				var (
					k                   coffer.DataKey
					v, at, uses, rewrap int64
				)
				if err := rs.Scan(&k.KeyID, &v, &k.Wrapped, &k.State, &at, &uses, &rewrap); err != nil {
					rs.Close()
					return fmt.Errorf("store: data keys: %w", err)
				}
				k.Version, k.Created = uint32(v), fromMicros(at) // #nosec G115 -- versions are stored from uint32
				k.Uses, k.RewrapUses = counts(uses, rewrap)
				out = append(out, k)
			}
			err = rs.Err()
			rs.Close()
			if err != nil {
				return fmt.Errorf("store: data keys: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ErrNotTombstone is returned (wrapped) by RestoreSubjectKeys for a key id
// that is not a subject key tombstone in this store.
var ErrNotTombstone = errors.New("store: not a subject key tombstone")

// RestoreSubjectKeys replaces subject key tombstones with the given key
// versions, copied wrapped from another store under the same root key: for
// each key id among keys, every stored (destroyed) version is deleted and
// keys' versions of it are inserted as they are, use counts included. All
// of it happens in one transaction, or nothing does.
//
// It refuses (nothing changes) a key id that is not a subject key, one
// this store holds a live version of (only tombstones are replaced), and
// a version that is not active or retired with wrapped bytes (or destroyed
// without them, beside a live version of its key id: one version ended on
// its own), and a key id whose every version is destroyed: a destroyed key
// stays destroyed, never half restored. It returns how many key ids
// it restored.
func (db *DB) RestoreSubjectKeys(ctx context.Context, keys []coffer.DataKey) (int, error) {
	byID := map[string][]coffer.DataKey{}
	var order []string
	for _, k := range keys {
		if coffer.ParseKeyID(k.KeyID).Kind != coffer.KeySubject {
			return 0, errors.New("store: restore subject keys: a key id is not a subject key")
		}
		switch {
		case k.State == coffer.KeyDestroyed:
			// One version destroyed on its own (beside live ones, checked
			// below): it comes back as a tombstone, its bytes erased.
			if len(k.Wrapped) != 0 {
				return 0, errors.New("store: restore subject keys: a destroyed version with wrapped bytes")
			}
		case k.State != coffer.KeyActive && k.State != coffer.KeyRetired:
			return 0, fmt.Errorf("store: restore subject keys: a version in state %q: only active and retired versions are restored", k.State)
		case len(k.Wrapped) == 0:
			return 0, errors.New("store: restore subject keys: a version without wrapped bytes")
		}
		if _, ok := byID[k.KeyID]; !ok {
			order = append(order, k.KeyID)
		}
		byID[k.KeyID] = append(byID[k.KeyID], k)
	}
	for _, id := range order {
		if coffer.Erased(byID[id]) {
			return 0, errors.New("store: restore subject keys: every version of a key is destroyed: a destroyed key stays destroyed")
		}
	}
	err := db.inTx(ctx, func(q querier) error {
		for _, id := range order {
			var live int64
			if err := q.queryRow(ctx, `SELECT COUNT(*) FROM data_keys WHERE key_id = $1 AND state <> $2`,
				id, coffer.KeyDestroyed).Scan(&live); err != nil {
				return fmt.Errorf("store: restore subject keys: data_keys: %w", err)
			}
			if live > 0 {
				return fmt.Errorf("store: restore subject keys: %w: data_keys holds live versions of the key id", ErrNotTombstone)
			}
			n, err := q.exec(ctx, `DELETE FROM data_keys WHERE key_id = $1`, id)
			if err != nil {
				return fmt.Errorf("store: restore subject keys: delete from data_keys: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("store: restore subject keys: %w: data_keys holds no version of the key id", ErrNotTombstone)
			}
			for _, k := range byID[id] {
				if k.Uses > math.MaxInt64 {
					return errors.New("store: restore subject keys: data_keys.uses out of range")
				}
				if k.RewrapUses > k.Uses {
					return errors.New("store: restore subject keys: data_keys.rewrap_uses over uses")
				}
				if _, err := q.exec(ctx, `INSERT INTO data_keys (key_id, version, wrapped, state, created_at, uses, rewrap_uses)
					VALUES ($1, $2, $3, $4, $5, $6, $7)`,
					k.KeyID, int64(k.Version), nonNilBytes(k.Wrapped), k.State, micros(k.Created), int64(k.Uses), int64(k.RewrapUses)); err != nil { // #nosec G115 -- rewrap_uses <= uses <= MaxInt64, checked above
					return fmt.Errorf("store: restore subject keys: insert into data_keys: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(order), nil
}
