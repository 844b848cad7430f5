package store

import "context"

// MigrateUpTo applies the migrations up to version only, so that a test
// can write data as an older schema held it and then migrate.
func (db *DB) MigrateUpTo(ctx context.Context, version int64) error {
	p, err := db.provider()
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}

// ExecRaw runs one statement on the write side, for tests that write what
// no store method writes (rows as an older schema held them).
func (db *DB) ExecRaw(ctx context.Context, q string, args ...any) error {
	_, err := db.write.exec(ctx, q, args...)
	return err
}
