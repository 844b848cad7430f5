package storetest

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Intruder opens the database at dsn (a SQLite path or a postgres:// URL,
// as config.Database returns it) with its own connection, as someone with
// write access to the database would, and drops the triggers that keep the
// audit tables append-only, as such an intruder could. Statements take $1,
// $2, … placeholders on both backends. The connection closes at cleanup.
func Intruder(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	drops := []string{
		`DROP TRIGGER IF EXISTS audit_events_no_update`,
		`DROP TRIGGER IF EXISTS audit_events_no_delete`,
		`DROP TRIGGER IF EXISTS audit_log_no_update`,
		`DROP TRIGGER IF EXISTS audit_log_no_delete`,
		`DROP TRIGGER IF EXISTS audit_events_delete_archived_only`,
		`DROP TRIGGER IF EXISTS audit_log_delete_archived_only`,
		`DROP TRIGGER IF EXISTS audit_checkpoints_no_update`,
		`DROP TRIGGER IF EXISTS audit_checkpoints_no_delete`,
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		drops = []string{
			`DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events`,
			`DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log`,
			`DROP TRIGGER IF EXISTS audit_events_delete_archived_only ON audit_events`,
			`DROP TRIGGER IF EXISTS audit_log_delete_archived_only ON audit_log`,
			`DROP TRIGGER IF EXISTS audit_checkpoints_append_only ON audit_checkpoints`,
		}
	}
	db := Raw(tb, dsn)
	for _, q := range drops {
		if _, err := db.ExecContext(context.Background(), q); err != nil {
			tb.Fatalf("intruder: %s: %v", q, err)
		}
	}
	return db
}

// Raw opens the database at dsn with its own connection, as someone with
// the application's write access would, leaving every trigger in place.
// The connection closes at cleanup.
func Raw(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	driver := "sqlite"
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		driver = "pgx"
	} else {
		// The server may be writing: wait for its lock as it does.
		dsn = "file:" + dsn + "?" + url.Values{"_pragma": {"busy_timeout(10000)"}}.Encode()
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		tb.Fatalf("raw: open: %v", err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { _ = db.Close() })
	return db
}
