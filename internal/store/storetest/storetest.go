package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cofferhq/coffer/internal/store"
)

// DefaultPostgres is the test database used when COFFER_TEST_POSTGRES is unset.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Backend is one store backend to run a test against.
type Backend struct {
	Name string // "sqlite" or "postgres"
	// DSN opens a fresh, empty database for this backend when called; it
	// skips (or, in CI, fails) the test when the backend is unavailable.
	DSN func(tb testing.TB) string
}

// Backends returns SQLite and PostgreSQL.
func Backends() []Backend {
	return []Backend{
		{Name: store.SQLite, DSN: SQLiteDSN},
		{Name: store.Postgres, DSN: PostgresDSN},
	}
}

// SQLiteDSN returns the path of a new SQLite file in a temporary directory.
func SQLiteDSN(tb testing.TB) string {
	tb.Helper()
	return tb.TempDir() + "/coffer.db"
}

// PostgresDSN creates a fresh schema in the test database and returns a
// DSN whose search_path is that schema; the schema is dropped at cleanup.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("COFFER_TEST_POSTGRES")
	if base == "" {
		base = DefaultPostgres
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL is required in CI but unreachable: %v", err)
		}
		tb.Skipf("PostgreSQL unreachable (set COFFER_TEST_POSTGRES): %v", err)
	}
	defer conn.Close(context.Background())
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	schema := "coffer_test_" + hex.EncodeToString(b)
	// The schema name is ours, made of hex digits: safe to quote as an identifier.
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		tb.Fatalf("create test schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Logf("drop test schema: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Logf("drop test schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open opens and migrates a fresh store of backend b, closed at cleanup.
func Open(tb testing.TB, b Backend) *store.DB {
	tb.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, b.DSN(tb), store.Options{})
	if err != nil {
		tb.Fatalf("open %s store: %v", b.Name, err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		tb.Fatalf("migrate %s store: %v", b.Name, err)
	}
	return db
}

// ProcessCPU returns the user and system CPU time this process has used,
// for benchmarks that report CPU per operation: steadier than wall time on
// a shared machine. On PostgreSQL it leaves out the server's own.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
