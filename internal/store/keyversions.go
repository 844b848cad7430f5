package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// DestroyRetiredDataKey crypto-shreds one retired version of a data key:
// it erases the version's wrapped bytes and marks it destroyed, durably,
// and only if it is retired (never an active version, never another
// version of the key). It reports whether it changed the version; a
// version already destroyed, still active or missing changes nothing.
func (db *DB) DestroyRetiredDataKey(ctx context.Context, keyID string, version uint32) (bool, error) {
	n, err := db.write.exec(ctx, `UPDATE data_keys SET wrapped = $1, state = $2
		WHERE key_id = $3 AND version = $4 AND state = $5`,
		[]byte{}, coffer.KeyDestroyed, keyID, int64(version), coffer.KeyRetired)
	if err != nil {
		return false, fmt.Errorf("store: destroy data key version: %w", err)
	}
	return n > 0, nil
}

// CountSealedUnder counts the stored values sealed under one version of a
// value key, by the key version their envelope header names:
// "collection/NAME" and "subject/ID" keys seal record values,
// "tokens/TYPE" keys the values of random and deterministic tokens of that
// type. Any other key id is an error, as is a stored value whose
// encoding cannot be read (so a caller never concludes "none" from a
// scan that did not see everything). It reads every value of the key:
// an administrative check, not for requests.
func (db *DB) CountSealedUnder(ctx context.Context, keyID string, version uint32) (int64, error) {
	var (
		q       string
		args    []any
		records bool // rows are records' values blobs, not one token's sealed value
	)
	switch id := coffer.ParseKeyID(keyID); id.Kind {
	// A record's key id is made from its collection or its subject
	// (coffer.RecordKey), so the scan can go through the primary key or the
	// subject index instead of the whole table.
	case coffer.KeyCollection:
		q, args, records = `SELECT values_blob, meta_seal FROM records WHERE collection = $1 AND key_id = $2`,
			[]any{id.Name, keyID}, true
	case coffer.KeySubject:
		// subject <> '' lets the planner use the partial subject index.
		q, args, records = `SELECT values_blob, meta_seal FROM records WHERE subject = $1 AND subject <> '' AND key_id = $2`,
			[]any{id.Name, keyID}, true
	case coffer.KeyTokenValue:
		q, args = `SELECT sealed FROM tokens WHERE type = $1`, []any{id.Name}
	default:
		return 0, fmt.Errorf("store: count sealed values: %s seals no stored values", keyID)
	}
	rs, err := db.read.query(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("store: count sealed values: %w", err)
	}
	defer rs.Close()
	var n int64
	for rs.Next() {
		var b, seal []byte
		dest := []any{&b}
		if records {
			dest = append(dest, &seal)
		}
		if err := rs.Scan(dest...); err != nil {
			return 0, fmt.Errorf("store: count sealed values: %w", err)
		}
		if len(seal) > 0 && sealedUnder(seal, version) {
			n++ // a record's seal is sealed under the record's key too
		}
		if !records {
			if len(b) > 0 && sealedUnder(b, version) {
				n++
			}
			continue
		}
		var vals map[string][]byte
		if err := json.Unmarshal(b, &vals); err != nil {
			return 0, fmt.Errorf("store: count sealed values: decode sealed values: %w", err)
		}
		for _, env := range vals {
			if sealedUnder(env, version) {
				n++
			}
		}
	}
	if err := rs.Err(); err != nil {
		return 0, fmt.Errorf("store: count sealed values: %w", err)
	}
	return n, nil
}

// sealedUnder reports whether env's header names version. An envelope
// without a readable header opens under no version and is not counted.
func sealedUnder(env []byte, version uint32) bool {
	v, err := envelope.KeyVersion(env)
	return err == nil && v == version
}

// SwapDataKeyState sets the state of one version of a data key to to, only
// if it is from (compare-and-swap, so a version another node destroyed
// meanwhile is never brought back). It reports whether it changed it.
func (db *DB) SwapDataKeyState(ctx context.Context, keyID string, version uint32, from, to string) (bool, error) {
	n, err := db.write.exec(ctx, `UPDATE data_keys SET state = $1 WHERE key_id = $2 AND version = $3 AND state = $4`,
		to, keyID, int64(version), from)
	if err != nil {
		return false, fmt.Errorf("store: set data key state: %w", err)
	}
	return n > 0, nil
}
