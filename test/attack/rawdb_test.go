package attack

import (
	"database/sql"
	"regexp"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/cofferhq/coffer/internal/config"
)

// rawDB is the deployment's database opened directly, beside the server,
// as an intruder with database access (or an operator) would: statements
// go past Coffer. Statements use $1, $2, … on both backends.
type rawDB struct {
	db     *sql.DB
	sqlite bool
}

// openRaw opens n's database directly; it is closed when the test ends.
func openRaw(t testing.TB, n *node) *rawDB {
	t.Helper()
	cfg, err := config.Load(n.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	kind, dsn := cfg.Database()
	driver := "pgx"
	if kind == config.DatabaseSQLite {
		// Wait for the serving node's writes instead of failing busy.
		driver, dsn = "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1)
	return &rawDB{db: db, sqlite: kind == config.DatabaseSQLite}
}

var dollar = regexp.MustCompile(`\$([0-9]+)`)

func (r *rawDB) q(stmt string) string {
	if r.sqlite {
		return dollar.ReplaceAllString(stmt, "?$1")
	}
	return stmt
}

// exec runs a statement that must change exactly one row.
func (r *rawDB) exec(t testing.TB, stmt string, args ...any) {
	t.Helper()
	res, err := r.db.Exec(r.q(stmt), args...)
	if err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("%s: %d rows changed, want 1 (%v)", stmt, n, err)
	}
}

// row scans one row.
func (r *rawDB) row(t testing.TB, stmt string, args []any, dest ...any) {
	t.Helper()
	if err := r.db.QueryRow(r.q(stmt), args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}
