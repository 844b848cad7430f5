package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for raw test writes

	"github.com/cofferhq/coffer/internal/backup"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// rawStore is a migrated store plus a separate database/sql handle on the
// same database, for tables no store method writes yet and for reading
// the schema itself.
type rawStore struct {
	db  *store.DB
	raw *sql.DB
}

func openRaw(t *testing.T, b storetest.Backend) rawStore {
	t.Helper()
	ctx := context.Background()
	dsn := b.DSN(t)
	db, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", b.Name, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate %s: %v", b.Name, err)
	}
	driver, name := "pgx", dsn
	if b.Name == store.SQLite {
		driver, name = "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)"
	}
	raw, err := sql.Open(driver, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	return rawStore{db: db, raw: raw}
}

// schemaTables lists the tables the migrations made, goose's aside, with
// their column counts.
func (s rawStore) schemaTables(t *testing.T) map[string]int {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'goose_db_version'`
	cols := `SELECT COUNT(*) FROM pragma_table_info($1)`
	if s.db.Dialect() == store.Postgres {
		q = `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'goose_db_version'`
		cols = `SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`
	}
	rs, err := s.raw.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rs.Next() {
		var n string
		if err := rs.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rs.Close(); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, n := range names {
		var c int
		if err := s.raw.QueryRow(cols, n).Scan(&c); err != nil {
			t.Fatal(err)
		}
		out[n] = c
	}
	if len(out) < 10 {
		t.Fatalf("schema lists only %d tables: %v", len(out), out)
	}
	return out
}

var bt0 = time.Date(2026, 11, 28, 12, 0, 0, 123456000, time.UTC)

// fill writes at least one row into every table: through the store's
// methods where they exist, by raw SQL for the rest.
func fill(t *testing.T, s rawStore) {
	t.Helper()
	ctx := context.Background()
	db := s.db
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.CreateCollection(ctx, coffer.Collection{Name: "customers", CreatedAt: bt0, Retention: time.Hour,
		Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail, Searchable: true}}}))
	must(db.CreateCollection(ctx, coffer.Collection{Name: "Zürich ünïcode", CreatedAt: bt0}))
	exp := bt0.Add(24 * time.Hour)
	for i := range 25 {
		r := coffer.SealedRecord{
			ID: fmt.Sprintf("r%03d", i), Collection: "customers", Owner: "alice", KeyID: "collection/customers",
			CreatedAt: bt0, UpdatedAt: bt0.Add(time.Duration(i) * time.Second),
			Values: map[string][]byte{"email": {0, 1, 2, 0xff, byte(i)}},
		}
		if i%2 == 0 {
			r.ExpiresAt, r.Subject, r.Canary = &exp, "subj-1", i == 4
		}
		must(db.InsertRecord(ctx, r, []coffer.IndexEntry{{Field: "email", Version: 1, MAC: []byte{byte(i), 0, 0xfe}}}))
	}
	must(db.InsertDataKey(ctx, coffer.DataKey{KeyID: "collection/customers", Version: 1, Wrapped: []byte{1, 2, 3},
		State: coffer.KeyRetired, Created: bt0}))
	must(db.InsertDataKey(ctx, coffer.DataKey{KeyID: "collection/customers", Version: 2, Wrapped: []byte{},
		State: coffer.KeyActive, Created: bt0}))
	must(db.AddDataKeyUses(ctx, "collection/customers", 2, 30, 25)) // 25 of its 30 uses by the rewrap
	must(db.CreateClient(ctx, coffer.Client{ID: "c1", Name: "billing", SecretHash: "$argon2id$x", Roles: []string{"reader"},
		Attributes: map[string]string{"team": "pay"}, CreatedAt: bt0, Disabled: true}))
	must(db.CreateUser(ctx, coffer.User{ID: "u1", Username: "ann", PasswordHash: "h", Roles: []string{"admin"},
		TOTPSecret: []byte("totp-sealed"), TOTPConfirmed: true, TOTPLastStep: math.MaxInt64,
		RecoveryHashes: []string{"a", "b"}, CreatedAt: bt0}))
	must(db.CreateUser(ctx, coffer.User{ID: "u2", Username: "bob", PasswordHash: "h2", CreatedAt: bt0})) // NULL totp_secret
	must(db.InsertSigningKey(ctx, coffer.SigningKeyRecord{KID: "k1", Sealed: []byte{9}, CreatedAt: bt0, NotAfter: exp, Active: true}))
	must(db.RevokeToken(ctx, "jti-1", exp))
	_, _, err := db.AuthFailure(ctx, "user:ann", bt0, time.Hour, func(int) time.Duration { return time.Minute })
	must(err)
	_, err = db.SavePolicy(ctx, "yaml", []byte("rules: []\n"), bt0)
	must(err)
	conflicts, err := db.PutTokens(ctx, []coffer.StoredToken{
		{MAC: []byte{0xaa}, Type: "card", Mode: "random", Version: 1, Sealed: []byte{1}, ExpiresAt: &exp, CreatedAt: bt0},
		{MAC: []byte{0xab, 0}, Type: "email", Mode: "deterministic", Version: 3, Sealed: []byte{}, Canary: true, CreatedAt: bt0},
		{MAC: []byte{0xac}, Type: "card_number", Mode: "format_preserving", Version: 2, Sealed: []byte{}, CreatedAt: bt0, FPEOptions: 3},
	})
	must(err)
	if len(conflicts) != 0 {
		t.Fatalf("conflicts %x", conflicts)
	}
	lease, ok, err := db.AcquireLease(ctx, "rewrap", "node-a", bt0, time.Minute)
	must(err)
	if !ok {
		t.Fatal("lease not acquired")
	}
	must(db.SetJobState(ctx, lease, `{"after":"r010"}`, bt0))
	must(db.SetMeta(ctx, "node_id", "n-1"))
	_, ok, err = db.ClaimIdempotencyKey(ctx, coffer.IdempotencyKey{Principal: "client:c1", Key: "k-1", Fingerprint: []byte{1, 2},
		Owner: "o-1", Instance: "i-1", ClaimUntil: bt0.Add(time.Minute), CreatedAt: bt0, ExpiresAt: bt0.Add(24 * time.Hour)})
	must(err)
	if !ok {
		t.Fatal("idempotency key not claimed")
	}
	ok, err = db.CompleteIdempotencyKey(ctx, "client:c1", "k-1", "o-1", 201, "application/json", []byte{9, 8})
	must(err)
	if !ok {
		t.Fatal("idempotency key not completed")
	}
	ok, err = db.AcquireNodeLease(ctx, coffer.Node{ID: "n-1", Instance: "i-1", Host: "h", Version: "v1.2.3", SchemaVersion: 15,
		StartedAt: bt0, HeartbeatAt: bt0.Add(time.Second), LeaseUntil: bt0.Add(time.Minute)})
	must(err)
	if !ok {
		t.Fatal("node lease not acquired")
	}

	// Tables whose store methods belong to other packages' work.
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO audit_events (node, seq, id, time, principal, action, body, hash, prev_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, []any{"n-1", 1, "ev1", 5, "client:c1", "record.read", "{}", "h1", ""}},
		{`INSERT INTO audit_events (node, seq, id, time, principal, action, body, hash, prev_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, []any{"n-1", 2, "ev2", 6, "user:ann", "policy.save", `{"x":1}`, "h2", "h1"}},
		{`INSERT INTO audit_log (node, seq, time, principal, action, hash, body) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			[]any{"n-1", 3, 7, "client:c1", "read", []byte{1, 2, 3}, []byte{1, 0, 255}}},
		{`INSERT INTO audit_checkpoints (node, seq, hash, time, signature, key_version) VALUES ($1, $2, $3, $4, $5, $6)`,
			[]any{"n-1", 2, "h2", 7, []byte{0, 1, 2}, 3}},
		{`INSERT INTO audit_segments (node, first_seq, last_seq, prev_hash, head_hash, first_time, last_time, bytes, verified_at, pruned_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, []any{"n-9", 1, 2, "", "h2", 5, 6, 321, 7, 0}},
		{`INSERT INTO security_events (id, time, kind, severity, principal, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
			[]any{"se1", 8, "bulk_read", "high", "client:c1", `{"n":500}`}},
		{`INSERT INTO detect_counts (key, window_start, count) VALUES ($1, $2, $3)`, []any{"denied:c1", -9, 3}},
		{`INSERT INTO suspensions (principal, until, reason) VALUES ($1, $2, $3)`, []any{"client:c1", 10, "bulk read"}},
		{`INSERT INTO transit_keys (name, created_at, min_decryption_version, latest_version, deletable, auto_rotate_s, encryptions)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, []any{"payments", 11, 1, 2, 0, 86400, 42}},
	} {
		if _, err := s.raw.Exec(q.sql, q.args...); err != nil {
			t.Fatalf("raw insert: %v", err)
		}
	}
}

type dump map[string][]string

// export collects every row, rendered with its Go types, per table.
func export(t *testing.T, db *store.DB) dump {
	t.Helper()
	d := dump{}
	err := db.Export(context.Background(), func(table string, row []any) error {
		var sb strings.Builder
		for i, v := range row {
			if i > 0 {
				sb.WriteByte('|')
			}
			switch v.(type) {
			case nil, int64, string, []byte:
			default:
				return fmt.Errorf("%s: value of type %T", table, v)
			}
			fmt.Fprintf(&sb, "%T:%q", v, v)
		}
		d[table] = append(d[table], sb.String())
		return nil
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	for _, rows := range d {
		slices.Sort(rows) // text collation differs between backends
	}
	return d
}

// rowsOf returns Export's rows as Import's next function.
func rowsOf(t *testing.T, db *store.DB) func() (string, []any, error) {
	t.Helper()
	type item struct {
		table string
		row   []any
	}
	var items []item
	if err := db.Export(context.Background(), func(table string, row []any) error {
		items = append(items, item{table, row})
		return nil
	}); err != nil {
		t.Fatalf("export: %v", err)
	}
	return func() (string, []any, error) {
		if len(items) == 0 {
			return "", nil, io.EOF
		}
		it := items[0]
		items = items[1:]
		return it.table, it.row, nil
	}
}

func TestExportImportAcrossBackends(t *testing.T) {
	for _, from := range storetest.Backends() {
		for _, to := range storetest.Backends() {
			t.Run(from.Name+"_to_"+to.Name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				src := openRaw(t, from)
				fill(t, src)
				want := export(t, src.db)

				// Every table of the schema is exported with all its columns.
				schema := src.schemaTables(t)
				for table, ncols := range schema {
					rows := want[table]
					if len(rows) == 0 {
						t.Fatalf("table %s is missing from the export", table)
					}
					if got := strings.Count(rows[0], "|") + 1; got != ncols {
						t.Fatalf("table %s: exported %d columns, schema has %d", table, got, ncols)
					}
				}
				if len(want) != len(schema) {
					t.Fatalf("exported %d tables, schema has %d", len(want), len(schema))
				}

				dst := openRaw(t, to)
				if err := dst.db.Import(ctx, rowsOf(t, src.db)); err != nil {
					t.Fatalf("import: %v", err)
				}
				got := export(t, dst.db)
				for table, rows := range want {
					if !slices.Equal(rows, got[table]) {
						t.Errorf("table %s differs after import:\n got %q\nwant %q", table, got[table], rows)
					}
				}

				// The restored store serves the same data through its methods.
				r, err := dst.db.Record(ctx, "customers", "r004")
				if err != nil {
					t.Fatal(err)
				}
				if !r.Canary || r.Subject != "subj-1" || r.ExpiresAt == nil || !bytes.Equal(r.Values["email"], []byte{0, 1, 2, 0xff, 4}) {
					t.Fatalf("restored record: %+v", r)
				}
				ids, err := dst.db.SearchIndex(ctx, "customers", "email", [][]byte{{7, 0, 0xfe}}, 10)
				if err != nil || len(ids) != 1 || ids[0] != "r007" {
					t.Fatalf("restored index: %v %v", ids, err)
				}
				u, err := dst.db.UserByName(ctx, "", "ann")
				if err != nil || string(u.TOTPSecret) != "totp-sealed" || u.TOTPLastStep != math.MaxInt64 {
					t.Fatalf("restored user: %+v %v", u, err)
				}
				if u, err := dst.db.UserByName(ctx, "", "bob"); err != nil || u.TOTPSecret != nil {
					t.Fatalf("restored user without TOTP: %+v %v", u, err)
				}
				v, _, src2, err := dst.db.Policy(ctx)
				if err != nil || v != 1 || string(src2) != "rules: []\n" {
					t.Fatalf("restored policy: %d %q %v", v, src2, err)
				}
				ks, err := dst.db.DataKeys(ctx, "collection/customers")
				if err != nil || len(ks) != 2 || ks[1].Uses != 30 || ks[1].RewrapUses != 25 {
					t.Fatalf("restored data keys: %+v %v", ks, err)
				}
				due, err := dst.db.DueDataKeys(ctx, coffer.DueKeyQuery{Prefix: "collection/", UsesOver: 29, Limit: 10})
				if err != nil || len(due) != 1 || due[0].Uses != 30 || due[0].RewrapUses != 25 {
					t.Fatalf("restored due data keys: %+v %v", due, err)
				}
				toks, err := dst.db.Tokens(ctx, [][]byte{{0xab, 0}, {0xac}})
				if err != nil || len(toks) != 2 || toks[string([]byte{0xac})].FPEOptions != 3 {
					t.Fatalf("restored tokens: %v %v", toks, err)
				}
				if _, _, _, schema, err := dst.db.StoredPolicy(ctx); err != nil || schema < 10 {
					t.Fatalf("restored policy's schema version: %d %v", schema, err)
				}
				// The audit tables stay append-only after a restore (no
				// recorded segment covers these events).
				if _, err := dst.raw.Exec(`DELETE FROM audit_events`); err == nil {
					t.Fatal("audit_events accepted a DELETE after restore")
				}
			})
		}
	}
}

func TestImportRefusesNonEmptyStore(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			src := openRaw(t, b)
			fill(t, src)
			// Any row in any table makes the store non-empty, even one no
			// user would notice.
			dst := openRaw(t, b)
			if err := dst.db.SetMeta(ctx, "node_id", "other"); err != nil {
				t.Fatal(err)
			}
			called := false
			next := rowsOf(t, src.db)
			err := dst.db.Import(ctx, func() (string, []any, error) { called = true; return next() })
			if !errors.Is(err, store.ErrNotEmpty) {
				t.Fatalf("import into non-empty store: %v, want ErrNotEmpty", err)
			}
			if called {
				t.Fatal("import read rows before refusing")
			}
			if d := export(t, dst.db); len(d) != 1 || len(d["meta"]) != 1 {
				t.Fatalf("store changed by refused import: %v", d)
			}
		})
	}
}

// TestDiscardRestore: on PostgreSQL a restore that failed after its
// import empties the database, the append-only audit tables included, so
// that it can be restored into again; on SQLite (whose file the restore
// removes) it changes nothing.
func TestDiscardRestore(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			src := openRaw(t, b)
			fill(t, src)
			dst := openRaw(t, b)
			if err := dst.db.Import(ctx, rowsOf(t, src.db)); err != nil {
				t.Fatal(err)
			}
			imported := export(t, dst.db)
			if len(imported["audit_events"]) == 0 {
				t.Fatal("the fixture has no audit events to discard")
			}
			if err := dst.db.DiscardRestore(ctx); err != nil {
				t.Fatal(err)
			}
			left := export(t, dst.db)
			if b.Name == "sqlite" {
				if !reflect.DeepEqual(left, imported) {
					t.Fatal("DiscardRestore changed a SQLite store")
				}
				return
			}
			if len(left) != 0 {
				t.Fatalf("rows left after DiscardRestore: %v", left)
			}
			if err := dst.db.Import(ctx, rowsOf(t, src.db)); err != nil {
				t.Fatalf("import after DiscardRestore: %v", err)
			}
		})
	}
}

func TestImportRollsBackEverything(t *testing.T) {
	errBoom := errors.New("stream broke")
	good := []any{"customers", `{"fields":[]}`, int64(0), int64(1)}
	record := []any{"customers", "r1", "", "", "k", []byte{1}, int64(0), int64(1), int64(1), nil, int64(0), nil}
	for _, tc := range []struct {
		name string
		rows []any // each a [2]any{table, row} or an error
		want error
	}{
		{"fails/next error after rows", []any{[2]any{"collections", good}, [2]any{"records", record}, errBoom}, errBoom},
		{"fails/unknown table", []any{[2]any{"collections", good}, [2]any{"goose_db_version", []any{int64(1)}}}, nil},
		{"fails/table out of order", []any{[2]any{"records", record}, [2]any{"collections", good}}, nil},
		{"fails/short row", []any{[2]any{"collections", good[:3]}}, nil},
		{"fails/string for int", []any{[2]any{"collections", []any{"c", "{}", "0", int64(1)}}}, nil},
		{"fails/int for string", []any{[2]any{"collections", []any{int64(5), "{}", int64(0), int64(1)}}}, nil},
		{"fails/NULL in NOT NULL", []any{[2]any{"collections", []any{"c", nil, int64(0), int64(1)}}}, nil},
		{"fails/foreign key", []any{[2]any{"collections", good}, [2]any{"records",
			[]any{"nope", "r1", "", "", "k", []byte{1}, int64(0), int64(1), int64(1), nil}}}, nil},
		{"fails/duplicate key", []any{[2]any{"collections", good}, [2]any{"collections", good}}, nil},
	} {
		for _, b := range storetest.Backends() {
			t.Run(tc.name+"/"+b.Name, func(t *testing.T) {
				t.Parallel()
				db := storetest.Open(t, b)
				items := slices.Clone(tc.rows)
				err := db.Import(context.Background(), func() (string, []any, error) {
					if len(items) == 0 {
						return "", nil, io.EOF
					}
					it := items[0]
					items = items[1:]
					if e, ok := it.(error); ok {
						return "", nil, e
					}
					p := it.([2]any)
					return p[0].(string), p[1].([]any), nil
				})
				if err == nil {
					t.Fatal("import succeeded")
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("import: %v, want %v", err, tc.want)
				}
				if d := export(t, db); len(d) != 0 {
					t.Fatalf("failed import left rows: %v", d)
				}
			})
		}
	}
}

func TestExportSeesOneSnapshot(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := openRaw(t, b)
			fill(t, s)
			wrote := false
			records := 0
			err := s.db.Export(ctx, func(table string, row []any) error {
				switch table {
				case "collections":
					if !wrote {
						wrote = true
						// Written and committed while the export is running:
						// the export must not see it.
						return s.db.InsertRecord(ctx, coffer.SealedRecord{ID: "late", Collection: "customers",
							KeyID: "k", CreatedAt: bt0, UpdatedAt: bt0, Values: map[string][]byte{}}, nil)
					}
				case "records":
					records++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if records != 25 {
				t.Fatalf("export saw %d records, want the 25 of its snapshot", records)
			}
			if _, err := s.db.Record(ctx, "customers", "late"); err != nil {
				t.Fatalf("concurrent write was lost: %v", err)
			}
		})
	}
}

func TestSchemaVersion(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			v, err := storetest.Open(t, b).SchemaVersion(context.Background())
			if err != nil || v < 1 {
				t.Fatalf("schema version %d, %v", v, err)
			}
		})
	}
}

// A backup written by an older Coffer (a store at schema version 2, before
// audit checkpoints recorded their key version) restores into a store at
// the latest version: the columns added since take their defaults, and a
// backup newer than the store is refused.
func TestRestoreBackupOfOlderSchema(t *testing.T) {
	ctx := context.Background()
	p, err := keyprovider.NewLocal("test", secret.NewKey(bytes.Repeat([]byte{7}, 32)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			old, err := store.Open(ctx, b.DSN(t), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			if err := old.MigrateUpTo(ctx, 2); err != nil {
				t.Fatal(err)
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(old.ExecRaw(ctx, `INSERT INTO data_keys (key_id, version, wrapped, state, created_at, uses) VALUES ($1, $2, $3, $4, $5, $6)`,
				"collection/people", 1, []byte("wrapped-key"), coffer.KeyActive, int64(1700000000000000), 42))
			must(old.ExecRaw(ctx, `INSERT INTO audit_checkpoints (node, seq, hash, time, signature) VALUES ($1, $2, $3, $4, $5)`,
				"n1", 1000, strings.Repeat("ab", 32), int64(1700000000000000), []byte("sig")))
			must(old.ExecRaw(ctx, `INSERT INTO policy (id, version, format, source, updated_at) VALUES (1, 7, 'yaml', $1, 0)`,
				[]byte("roles: {}")))
			var buf bytes.Buffer
			must(backup.Write(ctx, &buf, p, old, nil))
			h, err := backup.ReadHeader(bytes.NewReader(buf.Bytes()))
			if err != nil || h.Schema != 2 {
				t.Fatalf("header schema %d, %v; want 2", h.Schema, err)
			}

			dst := storetest.Open(t, b)
			must(backup.Read(ctx, bytes.NewReader(buf.Bytes()), p, dst))
			keys, err := dst.DataKeys(ctx, "collection/people")
			if err != nil || len(keys) != 1 || keys[0].Uses != 42 || keys[0].RewrapUses != 0 || string(keys[0].Wrapped) != "wrapped-key" {
				t.Fatalf("restored data keys %+v, %v", keys, err)
			}
			// A policy of the older schema comes back as written for the
			// policy language of its time (schema 0), for the restore to
			// rewrite (app.Restore, policy.Rewrites).
			if v, _, _, schema, err := dst.StoredPolicy(ctx); err != nil || v != 7 || schema != 0 {
				t.Fatalf("restored policy: version %d schema %d, %v", v, schema, err)
			}
			cps, err := dst.Checkpoints(ctx, "n1")
			if err != nil || len(cps) != 1 || cps[0].Seq != 1000 || cps[0].KeyVersion != 1 {
				t.Fatalf("restored checkpoints %+v, %v; want seq 1000 at key version 1", cps, err)
			}

			// The other way round: a backup of the latest schema into a
			// store still at version 2 is refused, and writes nothing.
			var latest bytes.Buffer
			must(backup.Write(ctx, &latest, p, dst, nil))
			older, err := store.Open(ctx, b.DSN(t), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer older.Close()
			must(older.MigrateUpTo(ctx, 2))
			if err := backup.Read(ctx, bytes.NewReader(latest.Bytes()), p, older); !errors.Is(err, backup.ErrSchema) {
				t.Fatalf("restore of a newer backup into an older store: %v, want ErrSchema", err)
			}
		})
	}
}
