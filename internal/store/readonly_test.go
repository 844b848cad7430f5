package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadOnlyDatabaseRefusesWrites: below the store's own refusal, the
// database itself refuses a write made on a read-only store's connections.
func TestReadOnlyDatabaseRefusesWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "coffer.db")
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dsns := map[string]string{SQLite: path}
	if pg := os.Getenv("COFFER_TEST_POSTGRES"); pg != "" {
		dsns[Postgres] = pg
	} else {
		dsns[Postgres] = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	for name, dsn := range dsns {
		t.Run(name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			ro, err := OpenReadOnly(cctx, dsn)
			if err != nil {
				if name == Postgres && os.Getenv("CI") == "" {
					t.Skipf("PostgreSQL unreachable: %v", err)
				}
				t.Fatal(err)
			}
			defer ro.Close()
			// A temporary table: harmless should the database ever accept it.
			_, err = ro.read.exec(cctx, "CREATE TEMP TABLE coffer_read_only_probe (x INTEGER)")
			want := map[string]string{SQLite: "readonly database", Postgres: "read-only transaction"}[name]
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("a write on a read-only store's connection: %v, want the database's %q", err, want)
			}
			if _, err := ro.write.exec(cctx, "CREATE TEMP TABLE coffer_read_only_probe (x INTEGER)"); err != ErrReadOnly { //nolint:errorlint // the sentinel itself
				t.Fatalf("the write side: %v", err)
			}
		})
	}
}
