package audit_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// scaleEvents is how many events TestAuditScale appends per backend:
// COFFER_AUDIT_SCALE_EVENTS, or a small count that keeps CI fast.
func scaleEvents(t *testing.T) int {
	if v := os.Getenv("COFFER_AUDIT_SCALE_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("COFFER_AUDIT_SCALE_EVENTS=%q", v)
		}
		return n
	}
	return 20000
}

// typical returns event i of a kind as the server logs it (the fields of
// real events, taken from a deployment's log, with fresh request and record
// ids).
func typical(kind string, i int) audit.Event {
	var rid [12]byte
	_, _ = rand.Read(rid[:])
	var id [16]byte
	_, _ = rand.Read(id[:])
	rec := fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:16])
	e := audit.Event{RequestID: hex.EncodeToString(rid[:]), PrincipalID: "cl_5065fr0gxdh04d8sbzmp", PrincipalKind: "client",
		Roles: []string{"admin"}, SourceIP: "127.0.0.1", Decision: audit.DecisionAllow, Rule: "admin[0]", Status: 200, Count: 1}
	switch kind {
	case "read", "create":
		e.Action, e.Resource = kind, "collections/customers"
		e.Fields = []string{"card_number", "email", "name", "ssn"}
		e.Targets = []string{"collections/customers/records/" + rec}
		if kind == "create" {
			e.Status = 201
		}
	case "tokenize":
		e.Action, e.Resource = "tokenize", "tokens/email"
		e.Targets = []string{"tokens/email/v1." + hex.EncodeToString(id[:11])}
	case "encrypt":
		e.Action, e.Resource, e.Reason = "encrypt", "keys/k1", "batch of 1: 1 ok, 0 failed"
		e.Targets = []string{"keys/k1/versions/1"}
	case "auth-failure":
		e = audit.Event{RequestID: e.RequestID, PrincipalID: "unauthenticated:cl_5065fr0gxdh04d8sbzmp", SourceIP: "127.0.0.1",
			Action: "token", Resource: "clients", Decision: audit.DecisionDeny, Reason: "invalid client credentials", Status: 401}
	default:
		panic(kind)
	}
	return e
}

// countingStore counts the appends a writer makes (its batches).
type countingStore struct {
	audit.Store
	appends atomic.Int64
}

func (c *countingStore) AppendAudit(ctx context.Context, events []audit.Event, cps []audit.Checkpoint) error {
	c.appends.Add(1)
	return c.Store.AppendAudit(ctx, events, cps)
}

// auditBytes returns the bytes the audit tables take: on SQLite the
// database's used pages (after a WAL checkpoint), on PostgreSQL the audit
// tables with their indexes and TOAST.
func auditBytes(t *testing.T, dialect string, raw *sql.DB) int64 {
	t.Helper()
	ctx := context.Background()
	if dialect == store.Postgres {
		var n int64
		if err := raw.QueryRowContext(ctx, `SELECT pg_total_relation_size('audit_events') + pg_total_relation_size('audit_log')
			+ pg_total_relation_size('audit_checkpoints')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := raw.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	var pages, free, size int64
	for q, v := range map[string]*int64{`PRAGMA page_count`: &pages, `PRAGMA freelist_count`: &free, `PRAGMA page_size`: &size} {
		if err := raw.QueryRowContext(ctx, q).Scan(v); err != nil {
			t.Fatal(err)
		}
	}
	return (pages - free) * size
}

// appendTypical logs n events of kind (all kinds in turn for "mix")
// through a writer on st from 64 goroutines, as a loaded server does, and
// returns how long it took.
func appendTypical(t *testing.T, st audit.Store, kind string, n int) time.Duration {
	t.Helper()
	ctx := context.Background()
	w, err := audit.NewWriter(ctx, st, audit.WriterConfig{Node: "vm-8b48c61b", Keys: keys, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{kind}
	if kind == "mix" {
		kinds = []string{"read", "read", "read", "create", "tokenize", "encrypt", "auth-failure"}
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := w.Log(ctx, typical(kinds[i%len(kinds)], i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestAuditBytesPerEvent measures, on each backend, the bytes an event
// takes in the database by kind, as JSON rows (audit_events, before
// migration 20) and as compact records (audit_log). It logs a table for
// BENCHMARKS.md. COFFER_AUDIT_BYTES_EVENTS sets the events per kind
// (default 5,000).
func TestAuditBytesPerEvent(t *testing.T) {
	n := 5000
	if v := os.Getenv("COFFER_AUDIT_BYTES_EVENTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, kind := range []string{"read", "create", "tokenize", "encrypt", "auth-failure"} {
				var perEvent [2]float64
				for i, format := range []string{"json", "compact"} {
					ctx := context.Background()
					dsn := b.DSN(t)
					db, err := store.Open(ctx, dsn, store.Options{})
					if err != nil {
						t.Fatal(err)
					}
					if err := db.Migrate(ctx); err != nil {
						t.Fatal(err)
					}
					raw := storetest.Intruder(t, dsn)
					var st audit.Store = audit.OnRows(db)
					if format == "json" {
						st = legacyStore{audit.OnRows(db), db}
					}
					before := auditBytes(t, b.Name, raw)
					cs := &countingStore{Store: st}
					appendTypical(t, cs, kind, n)
					perEvent[i] = float64(auditBytes(t, b.Name, raw)-before) / float64(n)
					if format == "compact" && b.Name == store.Postgres {
						var heap, pk, ti, row float64
						if err := raw.QueryRowContext(ctx, `SELECT pg_relation_size('audit_log')::float8 / count(*), pg_relation_size('audit_log_pkey')::float8 / count(*),
							pg_relation_size('audit_log_time')::float8 / count(*), avg(pg_column_size(audit_log.*)) FROM audit_log`).Scan(&heap, &pk, &ti, &row); err != nil {
							t.Fatal(err)
						}
						t.Logf("postgres %s: heap %.1f (row %.1f), primary key %.1f, time index %.1f bytes/event", kind, heap, row, pk, ti)
					}
					if b.Name == store.SQLite {
						// Where the bytes go, when the driver has dbstat.
						rs, err := raw.QueryContext(ctx, `SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'audit%' OR name LIKE 'sqlite_autoindex_audit%' GROUP BY name`)
						if err == nil {
							for rs.Next() {
								var name string
								var size float64
								if rs.Scan(&name, &size) == nil && size/float64(n) >= 1 {
									t.Logf("sqlite %s %s: %s %.1f bytes/event", format, kind, name, size/float64(n))
								}
							}
							_ = rs.Close()
						}
					}
					if format == "compact" {
						if rep, err := audit.Verify(ctx, st, lookup); err != nil || rep.Events != n {
							t.Fatalf("verify: %+v, %v", rep, err)
						}
						t.Logf("| %s | %s | %.0f | %.0f | %.1f |", b.Name, kind, perEvent[0], perEvent[1], float64(n)/float64(cs.appends.Load()))
					}
					_ = db.Close()
				}
				// 300 bytes at scale; a few thousand events also carry the
				// tables' fixed pages (index roots, free space maps).
				limit := 300.0
				if n < 20000 {
					limit = 330
				}
				if kind == "read" && perEvent[1] > limit {
					t.Errorf("%s: a record read takes %.0f bytes, over %.0f", b.Name, perEvent[1], limit)
				}
			}
		})
	}
}

// TestAuditScale appends COFFER_AUDIT_SCALE_EVENTS events (a mix of kinds,
// mostly record reads) through a writer on each backend, then verifies
// the log, and logs bytes per event, append and verify throughput. With
// COFFER_AUDIT_SCALE_FORMAT=json it writes JSON rows to audit_events, as
// before migration 20.
func TestAuditScale(t *testing.T) {
	n := scaleEvents(t)
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.DSN(t)
			db, err := store.Open(ctx, dsn, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			raw := storetest.Intruder(t, dsn)
			st := &countingStore{Store: audit.OnRows(db)}
			if os.Getenv("COFFER_AUDIT_SCALE_FORMAT") == "json" {
				// The log as Coffer wrote it before migration 20, to compare.
				st.Store = legacyStore{audit.OnRows(db), db}
			}
			before := auditBytes(t, b.Name, raw)
			d := appendTypical(t, st, "mix", n)
			size := auditBytes(t, b.Name, raw) - before
			start, cpu := time.Now(), storetest.ProcessCPU()
			rep, err := audit.Verify(ctx, st.Store, lookup)
			vd, vcpu := time.Since(start), storetest.ProcessCPU()-cpu
			if err != nil || rep.Events != n {
				t.Fatalf("verify: %+v, %v", rep, err)
			}
			// CPU time too: on a shared machine the wall clock says as much
			// about the other processes.
			t.Logf("%s: %d events: %.0f bytes/event (%d MB), append %.0f events/s (%.1f per batch), verify %.0f events/s (%s wall, %.0f events per CPU-second of this process)",
				b.Name, n, float64(size)/float64(n), size>>20, float64(n)/d.Seconds(), float64(n)/float64(st.appends.Load()),
				float64(n)/vd.Seconds(), vd.Round(time.Millisecond), float64(n)/vcpu.Seconds())
		})
	}
}
