package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/cofferhq/coffer/internal/coffer"
)

//go:embed migrations
var migrations embed.FS

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no such row.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a unique key already exists.
	ErrConflict = errors.New("store: already exists")
)

// querier is what both backends and their transactions offer.
type querier interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	query(ctx context.Context, q string, args ...any) (rows, error)
	queryRow(ctx context.Context, q string, args ...any) row
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

type row interface{ Scan(dest ...any) error }

// DB is an open store. It is safe for concurrent use.
type DB struct {
	dialect string
	// read serves reads; write serves writes and transactions. On SQLite
	// write is a single connection, so writers queue in Go rather than spin
	// on SQLITE_BUSY; on PostgreSQL both are the same pool.
	read, write querier
	begin       func(ctx context.Context) (txQuerier, error)
	closers     []func()
	sqlDB       *sql.DB // for migrations
	path        string  // SQLite file, "" on PostgreSQL
	// group batches SQLite write transactions into one commit; nil on
	// PostgreSQL, which syncs concurrent commits together itself.
	group *groupCommit
	// readOnly is set by OpenReadOnly: no write, no transaction, no migration.
	readOnly bool
	// pool is the PostgreSQL pool (nil on SQLite), for ListenChanges.
	pool *pgxpool.Pool
	// countsPruned is the ten-minute mark (Unix µs) up to which this node
	// last pruned the detectors' counters.
	countsPruned atomic.Int64
}

type txQuerier interface {
	querier
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

// Options tunes Open.
type Options struct {
	// MaxConns bounds the connection pool (default 16 on PostgreSQL,
	// 2×GOMAXPROCS readers on SQLite).
	MaxConns int
}

// Open opens the store named by dsn: "postgres://…" or "postgresql://…" for
// PostgreSQL, anything else is a SQLite file path (created 0600).
func Open(ctx context.Context, dsn string, o Options) (*DB, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return openPostgres(ctx, dsn, o, false)
	}
	return openSQLite(ctx, dsn, o)
}

// ErrReadOnly is returned for a write to a store opened with OpenReadOnly.
var ErrReadOnly = errors.New("store: opened read-only")

// ErrPendingMigrations: the database schema is older than this binary.
var ErrPendingMigrations = coffer.ErrPendingMigrations

// OpenReadOnly opens the store named by dsn (as Open) for reading only,
// for another deployment's store that may be serving at the time. It
// never creates, migrates or writes anything, and the database refuses
// writes as well: SQLite opens the existing file read-only (mode=ro,
// query_only; in WAL mode a reader runs beside the serving writer), and
// PostgreSQL sessions default to read-only transactions. Writes through
// the returned DB fail with ErrReadOnly.
func OpenReadOnly(ctx context.Context, dsn string) (*DB, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return openPostgres(ctx, dsn, Options{MaxConns: 4}, true)
	}
	return openSQLiteReadOnly(ctx, dsn)
}

// Dialect returns SQLite or Postgres.
func (db *DB) Dialect() string { return db.dialect }

// Path returns the SQLite database file, or "" on PostgreSQL.
func (db *DB) Path() string { return db.path }

// Close releases every connection.
func (db *DB) Close() error {
	for i := len(db.closers) - 1; i >= 0; i-- {
		db.closers[i]()
	}
	return nil
}

// Ping checks the database answers (for /readyz).
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.read.queryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Migrate applies every embedded migration not yet applied.
func (db *DB) Migrate(ctx context.Context) error {
	if db.readOnly {
		return fmt.Errorf("store: migrate: %w", ErrReadOnly)
	}
	p, err := db.provider()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// latestMigration returns the number of the newest migration embedded for
// dialect: the schema version this Coffer writes for.
func latestMigration(dialect string) (int64, error) {
	entries, err := fs.ReadDir(migrations, "migrations/"+dialect)
	if err != nil {
		return 0, fmt.Errorf("store: migrations: %w", err)
	}
	var latest int64
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			continue
		}
		latest = max(latest, n)
	}
	if latest == 0 {
		return 0, errors.New("store: no migrations embedded")
	}
	return latest, nil
}

func (db *DB) provider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+db.dialect)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	d := goose.DialectSQLite3
	if db.dialect == Postgres {
		d = goose.DialectPostgres
	}
	// Migrations apply strictly in order: a released database at version N
	// only ever meets migrations numbered above N, and a backup's schema
	// version says exactly which columns it has (see addedIn).
	p, err := goose.NewProvider(d, db.sqlDB, sub)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return p, nil
}

// inTx runs fn in a transaction on the write side, committing when fn
// returns nil and rolling back otherwise.
func (db *DB) inTx(ctx context.Context, fn func(q querier) error) error {
	if db.readOnly {
		return ErrReadOnly
	}
	if db.group != nil {
		return db.group.run(ctx, fn)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return mapErr(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.rollback(ctx)
		return err
	}
	if err := tx.commit(ctx); err != nil {
		return mapErr(err)
	}
	return nil
}

// mapErr turns driver errors callers branch on into sentinels.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return ErrConflict
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return ErrConflict
		}
	}
	return err
}

// ---- SQLite ----

type sqlQ struct {
	ph *placeholderRewriter
	db interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}
	// stmts holds statements prepared on the *sql.DB behind db (nil: run
	// every statement unprepared); tx is set inside a transaction, which
	// borrows them for its own connection.
	stmts *stmtCache
	tx    *sql.Tx
}

// stmt returns text's prepared statement for this handle, or nil.
func (q sqlQ) stmt(ctx context.Context, text string) *sql.Stmt {
	if q.tx == nil {
		return q.stmts.get(text)
	}
	if st := q.stmts.lookup(text); st != nil {
		return q.tx.StmtContext(ctx, st)
	}
	return nil
}

func (q sqlQ) exec(ctx context.Context, s string, args ...any) (int64, error) {
	text := q.ph.sql(s)
	var (
		res sql.Result
		err error
	)
	if st := q.stmt(ctx, text); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = q.db.ExecContext(ctx, text, args...)
	}
	if err != nil {
		return 0, mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: rows affected: %w", err)
	}
	return n, nil
}

func (q sqlQ) query(ctx context.Context, s string, args ...any) (rows, error) {
	text := q.ph.sql(s)
	var (
		r   *sql.Rows
		err error
	)
	if st := q.stmt(ctx, text); st != nil {
		r, err = st.QueryContext(ctx, args...)
	} else {
		r, err = q.db.QueryContext(ctx, text, args...)
	}
	if err != nil {
		return nil, mapErr(err)
	}
	return sqlRows{r}, nil
}

func (q sqlQ) queryRow(ctx context.Context, s string, args ...any) row {
	text := q.ph.sql(s)
	if st := q.stmt(ctx, text); st != nil {
		return errRow{st.QueryRowContext(ctx, args...)}
	}
	return errRow{q.db.QueryRowContext(ctx, text, args...)}
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

type errRow struct{ r row }

func (r errRow) Scan(dest ...any) error { return mapErr(r.r.Scan(dest...)) }

// readOnlyQ is the write side of a read-only DB: it refuses every exec
// before the database (which refuses writes too) sees it.
type readOnlyQ struct{ querier }

func (readOnlyQ) exec(context.Context, string, ...any) (int64, error) { return 0, ErrReadOnly }

type sqlTx struct {
	sqlQ
	tx *sql.Tx
}

func (t sqlTx) commit(context.Context) error   { return t.tx.Commit() }
func (t sqlTx) rollback(context.Context) error { return t.tx.Rollback() }

func openSQLite(ctx context.Context, path string, o Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: empty SQLite path")
	}
	path = filepath.Clean(path)
	// Create the file 0600 before the driver does, so it never exists with
	// a looser mode; WAL and SHM files take the main file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: create database file: %w", err)
	}
	_ = f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("store: database file mode: %w", err)
	}
	v := url.Values{}
	for _, p := range []string{
		"busy_timeout(10000)",
		"journal_mode(WAL)",
		// FULL: a committed transaction (an audit event above all) survives
		// power loss, not only a crash.
		"synchronous(FULL)",
		"foreign_keys(ON)",
		"secure_delete(ON)",
		// 64 MiB of page cache per connection: B-tree pages of the random-key
		// tables (tokens, blind indexes) stay in memory.
		"cache_size(-65536)",
		// Savepoint sub-journals (the group commit's per-caller savepoints)
		// and temporary B-trees in memory, not in temporary files: a big
		// batch's sub-journal otherwise costs a write per page it touches.
		"temp_store(MEMORY)",
	} {
		v.Add("_pragma", p)
	}
	v.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + v.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("store: open SQLite: %w", err)
	}
	n := o.MaxConns
	if n <= 0 {
		n = 8
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := w.PingContext(ctx); err != nil {
		_ = w.Close()
		_ = r.Close()
		return nil, fmt.Errorf("store: open SQLite: %w", err)
	}
	ph := &placeholderRewriter{}
	rs, ws := newStmtCache(r, 512), newStmtCache(w, 512)
	db := &DB{
		dialect: SQLite,
		read:    sqlQ{ph: ph, db: r, stmts: rs},
		write:   sqlQ{ph: ph, db: w, stmts: ws},
		sqlDB:   w,
		path:    path,
		closers: []func(){func() { _ = w.Close() }, func() { _ = r.Close() }, rs.close, ws.close},
	}
	db.begin = func(ctx context.Context) (txQuerier, error) {
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		return sqlTx{sqlQ{ph: ph, db: tx, stmts: ws, tx: tx}, tx}, nil
	}
	db.group = newGroupCommit(db, 256)
	db.group.idle = ws.prepareWanted
	db.closers = append(db.closers, db.group.close)
	return db, nil
}

// openSQLiteReadOnly opens an existing SQLite file for reading only: the
// file must exist (nothing is created and no mode is changed), SQLite opens
// it with mode=ro and query_only, and no pragma that writes is set. A
// database in WAL mode is read beside its serving writer, each read
// transaction seeing one snapshot.
func openSQLiteReadOnly(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: empty SQLite path")
	}
	path = filepath.Clean(path)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite read-only: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("store: open SQLite read-only: %s is not a regular file", path)
	}
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "query_only(1)")
	v.Set("mode", "ro")
	r, err := sql.Open("sqlite", "file:"+path+"?"+v.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite read-only: %w", err)
	}
	r.SetMaxOpenConns(2)
	r.SetMaxIdleConns(2)
	// A query, not a ping: it proves the file is a database we can read.
	var n int
	if err := r.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master").Scan(&n); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("store: open SQLite read-only: %w", err)
	}
	ph := &placeholderRewriter{}
	q := sqlQ{ph: ph, db: r}
	db := &DB{
		dialect:  SQLite,
		read:     q,
		write:    readOnlyQ{q},
		sqlDB:    r,
		path:     path,
		readOnly: true,
		closers:  []func(){func() { _ = r.Close() }},
	}
	db.begin = func(context.Context) (txQuerier, error) { return nil, ErrReadOnly }
	return db, nil
}

// ---- PostgreSQL ----

type pgQ struct {
	p interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		Query(context.Context, string, ...any) (pgx.Rows, error)
		QueryRow(context.Context, string, ...any) pgx.Row
	}
}

// unstorable reports whether an argument is a string PostgreSQL text cannot
// hold (NUL, invalid UTF-8). SQLite stores and compares such strings; on
// PostgreSQL no row can match one, so lookups find nothing rather than fail
// with a server error, and writes are refused as invalid input.
func unstorable(args []any) bool {
	bad := func(s string) bool { return strings.ContainsRune(s, 0) || !utf8.ValidString(s) }
	for _, a := range args {
		switch v := a.(type) {
		case string:
			if bad(v) {
				return true
			}
		case []string:
			if slices.ContainsFunc(v, bad) {
				return true
			}
		}
	}
	return false
}

func isInsert(s string) bool {
	u := strings.ToUpper(strings.TrimSpace(s))
	return strings.HasPrefix(u, "INSERT") || (strings.HasPrefix(u, "WITH") && strings.Contains(u, "INSERT"))
}

func (q pgQ) exec(ctx context.Context, s string, args ...any) (int64, error) {
	if unstorable(args) {
		if isInsert(s) {
			return 0, &coffer.Error{Code: coffer.EINVALID, Message: "a value holds NUL or invalid UTF-8 and cannot be stored"}
		}
		return 0, nil // no row can match it
	}
	tag, err := q.p.Exec(ctx, s, args...)
	if err != nil {
		return 0, mapErr(err)
	}
	return tag.RowsAffected(), nil
}

func (q pgQ) query(ctx context.Context, s string, args ...any) (rows, error) {
	if unstorable(args) {
		if isInsert(s) {
			return nil, &coffer.Error{Code: coffer.EINVALID, Message: "a value holds NUL or invalid UTF-8 and cannot be stored"}
		}
		return noRows{}, nil
	}
	r, err := q.p.Query(ctx, s, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	return r, nil
}

func (q pgQ) queryRow(ctx context.Context, s string, args ...any) row {
	if unstorable(args) {
		if isInsert(s) {
			return failRow{&coffer.Error{Code: coffer.EINVALID, Message: "a value holds NUL or invalid UTF-8 and cannot be stored"}}
		}
		return failRow{ErrNotFound}
	}
	return errRow{q.p.QueryRow(ctx, s, args...)}
}

// noRows is an empty result.
type noRows struct{}

func (noRows) Next() bool        { return false }
func (noRows) Scan(...any) error { return ErrNotFound }
func (noRows) Err() error        { return nil }
func (noRows) Close()            {}

// failRow is a row that fails with err.
type failRow struct{ err error }

func (r failRow) Scan(...any) error { return r.err }

type pgTx struct {
	pgQ
	tx pgx.Tx
}

func (t pgTx) commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t pgTx) rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

func openPostgres(ctx context.Context, dsn string, o Options, readOnly bool) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the DSN, password included.
		return nil, errors.New("store: invalid PostgreSQL URL")
	}
	if readOnly {
		// Every transaction of every session starts read-only: the server
		// refuses a write even if one got past readOnlyQ.
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = int32(min(o.MaxConns, 1<<16)) // #nosec G115 -- bounded above
	} else if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect PostgreSQL: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect PostgreSQL: %w", err)
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	db := &DB{
		dialect: Postgres,
		read:    pgQ{pool},
		write:   pgQ{pool},
		sqlDB:   sqlDB,
		pool:    pool,
		closers: []func(){pool.Close, func() { _ = sqlDB.Close() }},
	}
	if readOnly {
		db.write, db.readOnly = readOnlyQ{pgQ{pool}}, true
		db.begin = func(context.Context) (txQuerier, error) { return nil, ErrReadOnly }
		return db, nil
	}
	db.begin = func(ctx context.Context) (txQuerier, error) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		return pgTx{pgQ{tx}, tx}, nil
	}
	return db, nil
}

// ---- encoding helpers ----

func micros(t time.Time) int64 { return t.UTC().UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func notFound(what string) error {
	return &coffer.Error{Code: coffer.ENOTFOUND, Message: what + " not found", Cause: ErrNotFound}
}

// Pending reports whether embedded migrations are not yet applied.
func (db *DB) Pending(ctx context.Context) (bool, error) {
	p, err := db.provider()
	if err != nil {
		return false, err
	}
	ok, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("store: migration status: %w", err)
	}
	return ok, nil
}

// placeholderRewriter rewrites $N placeholders as ?N for SQLite: SQLite looks
// "$N" up by name (a linear scan per placeholder, quadratic per statement)
// but reads "?N" as a number. Only placeholder syntax changes (never inside
// a quoted string); rewrites are cached per statement text, which is always
// ours, never a caller's value.
type placeholderRewriter struct {
	cache sync.Map
	n     atomic.Int64
}

func (p *placeholderRewriter) sql(q string) string {
	if p == nil {
		return q
	}
	if v, ok := p.cache.Load(q); ok {
		return v.(string)
	}
	out := rewritePlaceholders(q)
	if p.n.Add(1) < 100000 {
		p.cache.Store(q, out)
	}
	return out
}

// rewritePlaceholders turns PostgreSQL's $N into SQLite's ?N, or into plain
// ? when the statement names $1…$k once each and in order: SQLite looks a
// numbered parameter's name up in a list on every bind, which made binding
// a many-row INSERT quadratic; anonymous parameters have no names to look up.
func rewritePlaceholders(q string) string {
	type ph struct{ start, end, n int }
	var (
		phs      []ph
		inString bool
	)
	for i := 0; i < len(q); i++ {
		switch {
		case q[i] == '\'':
			inString = !inString
		case !inString && q[i] == '$' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			j, n := i+1, 0
			for ; j < len(q) && q[j] >= '0' && q[j] <= '9'; j++ {
				n = n*10 + int(q[j]-'0')
			}
			phs = append(phs, ph{i, j, n})
			i = j - 1
		}
	}
	ordered := true
	for k, x := range phs {
		if x.n != k+1 {
			ordered = false
			break
		}
	}
	var b strings.Builder
	b.Grow(len(q))
	last := 0
	for _, x := range phs {
		b.WriteString(q[last:x.start])
		b.WriteByte('?')
		if !ordered {
			b.WriteString(q[x.start+1 : x.end])
		}
		last = x.end
	}
	b.WriteString(q[last:])
	return b.String()
}
