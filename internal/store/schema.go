package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// MetaCompatibleFrom is the meta key a migration that changes what older
// nodes rely on (drops or renames a column, changes a meaning) sets to its
// own number, in its SQL: the oldest schema version whose nodes may still
// serve the database. Every other migration only adds tables, or columns
// with defaults, that older nodes never read, and sets nothing; so an
// absent key means that nodes of any schema version since cluster
// membership (migration 15) may serve a newer database during a rolling
// upgrade.
const MetaCompatibleFrom = "schema.compatible_from"

// CompatibleFromRecorded returns the floor a migration recorded (0 when
// none did).
func (db *DB) CompatibleFromRecorded(ctx context.Context) (int64, error) {
	v, err := db.Meta(ctx, MetaCompatibleFrom)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("store: %s is not a number", MetaCompatibleFrom)
	}
	return n, nil
}
