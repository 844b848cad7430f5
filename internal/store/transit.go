package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// CreateTransitKey stores a new transit key's metadata; ECONFLICT if the
// name exists.
func (db *DB) CreateTransitKey(ctx context.Context, k coffer.TransitKey) error {
	_, err := db.write.exec(ctx, `INSERT INTO transit_keys (name, created_at, min_decryption_version, latest_version,
		deletable, auto_rotate_s, encryptions, origin, vault_latest_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		k.Name, micros(k.CreatedAt), int64(k.MinDecryptionVersion), int64(k.LatestVersion), b2i(k.Deletable),
		int64(k.AutoRotatePeriod/time.Second), k.EncryptionsSinceRotate, k.Origin, int64(k.VaultLatestVersion))
	if errors.Is(err, ErrConflict) {
		return &coffer.Error{Code: coffer.ECONFLICT, Message: "transit key already exists", Cause: err}
	}
	if err != nil {
		return fmt.Errorf("store: create transit key: %w", err)
	}
	return nil
}

// TransitKey returns a transit key's metadata; ENOTFOUND if none.
func (db *DB) TransitKey(ctx context.Context, name string) (coffer.TransitKey, error) {
	var (
		k                                 = coffer.TransitKey{Name: name}
		cr, minV, latest, del, rot, vault int64
	)
	err := db.read.queryRow(ctx, `SELECT created_at, min_decryption_version, latest_version, deletable, auto_rotate_s, encryptions,
		origin, vault_latest_version FROM transit_keys WHERE name = $1`, name).Scan(&cr, &minV, &latest, &del, &rot,
		&k.EncryptionsSinceRotate, &k.Origin, &vault)
	if errors.Is(err, ErrNotFound) {
		return k, notFound("transit key")
	}
	if err != nil {
		return k, fmt.Errorf("store: transit key: %w", err)
	}
	k.CreatedAt = fromMicros(cr)
	k.MinDecryptionVersion, k.LatestVersion = uint32(minV), uint32(latest) // #nosec G115 -- stored from uint32
	k.VaultLatestVersion = uint32(vault)                                   // #nosec G115 -- stored from uint32
	k.Deletable, k.AutoRotatePeriod = del != 0, time.Duration(rot)*time.Second
	return k, nil
}

// ConfigureTransitKey writes a transit key's settings: its minimum
// decryption version, deletability and rotation period, and nothing else,
// so that a rotation recorded meanwhile (RecordTransitVersion) stays;
// ENOTFOUND if none.
func (db *DB) ConfigureTransitKey(ctx context.Context, k coffer.TransitKey) error {
	n, err := db.write.exec(ctx, `UPDATE transit_keys SET min_decryption_version = $1, deletable = $2, auto_rotate_s = $3
		WHERE name = $4`, int64(k.MinDecryptionVersion), b2i(k.Deletable), int64(k.AutoRotatePeriod/time.Second), k.Name)
	if err != nil {
		return fmt.Errorf("store: configure transit key: %w", err)
	}
	if n == 0 {
		return notFound("transit key")
	}
	return nil
}

// RecordTransitVersion records version v as a transit key's latest and
// restarts its encryption count, touching no setting (a configuration
// written meanwhile stays). The latest version never goes back: a stored
// newer one stays, so two nodes rotating at once settle on the newer
// version, under which values are already being sealed. ENOTFOUND if
// there is no such key.
func (db *DB) RecordTransitVersion(ctx context.Context, name string, v uint32) error {
	n, err := db.write.exec(ctx, `UPDATE transit_keys
		SET latest_version = CASE WHEN latest_version > $1 THEN latest_version ELSE $1 END, encryptions = 0
		WHERE name = $2`, int64(v), name)
	if err != nil {
		return fmt.Errorf("store: record transit key version: %w", err)
	}
	if n == 0 {
		return notFound("transit key")
	}
	return nil
}

// TransitKeyNames returns the name of every transit key, in order.
func (db *DB) TransitKeyNames(ctx context.Context) ([]string, error) {
	rs, err := db.read.query(ctx, `SELECT name FROM transit_keys ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: transit key names: %w", err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var name string
		if err := rs.Scan(&name); err != nil {
			return nil, fmt.Errorf("store: transit key names: %w", err)
		}
		out = append(out, name)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("store: transit key names: %w", err)
	}
	return out, nil
}

// DeleteTransitKey removes a transit key's metadata; ENOTFOUND if none.
func (db *DB) DeleteTransitKey(ctx context.Context, name string) error {
	n, err := db.write.exec(ctx, `DELETE FROM transit_keys WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("store: delete transit key: %w", err)
	}
	if n == 0 {
		return notFound("transit key")
	}
	return nil
}

// AddTransitEncryptions adds n to a key's encryption count atomically and
// returns the new count.
func (db *DB) AddTransitEncryptions(ctx context.Context, name string, n int64) (int64, error) {
	var total int64
	err := db.write.queryRow(ctx, `UPDATE transit_keys SET encryptions = encryptions + $1 WHERE name = $2 RETURNING encryptions`,
		n, name).Scan(&total)
	if errors.Is(err, ErrNotFound) {
		return 0, notFound("transit key")
	}
	if err != nil {
		return 0, fmt.Errorf("store: count transit encryptions: %w", err)
	}
	return total, nil
}
