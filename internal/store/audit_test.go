package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// auditRow is row seq of node n1; the store keeps its body as it is, JSON
// or not.
func auditRow(seq uint64, principal string) coffer.AuditRow {
	return coffer.AuditRow{AuditColumns: coffer.AuditColumns{Node: "n1", Seq: seq, ID: fmt.Sprintf("n1:%d", seq),
		Time: t0.Add(time.Duration(seq) * time.Second), Principal: principal, Action: "read",
		Hash: fmt.Sprintf("%064x", seq), PrevHash: fmt.Sprintf("%064x", seq-1)},
		Body: fmt.Sprintf(`{"seq":%d,"ünïcode":"\u0000 'quoted'"}`, seq)}
}

func auditCheckpoint(seq uint64, v uint32) coffer.AuditCheckpoint {
	return coffer.AuditCheckpoint{Node: "n1", Seq: seq, Hash: fmt.Sprintf("%064x", seq), Time: t0.Add(time.Duration(seq) * time.Second),
		Signature: []byte{1, 2, 3}, KeyVersion: v}
}

func scanRows(t *testing.T, db *store.DB, after uint64) []coffer.AuditRow {
	t.Helper()
	var out []coffer.AuditRow
	err := db.ScanAuditRows(context.Background(), "n1", after, func(r *coffer.AuditRow) error {
		out = append(out, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkpointVersions(t *testing.T, db *store.DB) []uint32 {
	t.Helper()
	cps, err := db.Checkpoints(context.Background(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, c := range cps {
		out = append(out, c.KeyVersion)
	}
	return out
}

// TestAuditRowsRoundTrip: every row (columns and body) and checkpoint
// (with its key version) reads back as written, through PostgreSQL's
// one-statement append and the transaction path that SQLite always takes
// with its prepared statements (run twice, so the second time uses the
// cached ones); listings select by the columns, in (time, node, seq) order.
func TestAuditRowsRoundTrip(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var rows []coffer.AuditRow
		for seq := uint64(1); seq <= 5; seq++ {
			principal := "client-1"
			if seq == 3 {
				principal = "client-2"
			}
			rows = append(rows, auditRow(seq, principal))
		}
		appends := []struct {
			rows []coffer.AuditRow
			cps  []coffer.AuditCheckpoint
		}{
			{rows[:1], []coffer.AuditCheckpoint{auditCheckpoint(1, 0)}}, // one statement on PostgreSQL
			{rows[1:3], []coffer.AuditCheckpoint{auditCheckpoint(2, 2), auditCheckpoint(3, 3)}},
			{rows[3:5], []coffer.AuditCheckpoint{auditCheckpoint(4, 3), auditCheckpoint(5, 9)}},
			{nil, []coffer.AuditCheckpoint{auditCheckpoint(6, 12)}},
		}
		for i, a := range appends {
			if err := db.AppendAuditRows(ctx, a.rows, a.cps); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		if got := scanRows(t, db, 0); !slices.EqualFunc(got, rows, sameRow) {
			t.Fatalf("scanned rows\n%+v\nwant\n%+v", got, rows)
		}
		if got := scanRows(t, db, 3); !slices.EqualFunc(got, rows[3:], sameRow) {
			t.Fatalf("scanned after 3: %+v", got)
		}
		// A checkpoint without a version was signed by version 1.
		if got, want := checkpointVersions(t, db), []uint32{1, 2, 3, 3, 9, 12}; !slices.Equal(got, want) {
			t.Fatalf("checkpoint key versions %v, want %v", got, want)
		}
		if seq, hash, err := db.AuditHead(ctx, "n1"); err != nil || seq != 5 || hash != rows[4].Hash {
			t.Fatalf("AuditHead = %d, %q, %v", seq, hash, err)
		}
		if err := db.AppendAuditRows(ctx, []coffer.AuditRow{auditRow(6, "x"), auditRow(5, "x")}, nil); err == nil {
			t.Fatal("appending a (node, seq) that exists: accepted")
		}
		if got := scanRows(t, db, 0); len(got) != 5 {
			t.Fatalf("after a refused append: %d rows, want 5 (all or nothing)", len(got))
		}
		for _, tc := range []struct {
			name string
			q    coffer.AuditQuery
			want []coffer.AuditRow
		}{
			{"all", coffer.AuditQuery{Limit: 100}, rows},
			{"limit", coffer.AuditQuery{Limit: 2}, rows[:2]},
			{"principal", coffer.AuditQuery{Limit: 100, Principal: "client-1"}, []coffer.AuditRow{rows[0], rows[1], rows[3], rows[4]}},
			{"action", coffer.AuditQuery{Limit: 100, Action: "write"}, nil},
			{"since", coffer.AuditQuery{Limit: 100, Since: rows[3].Time}, rows[3:]},
			{"after", coffer.AuditQuery{Limit: 2, After: &coffer.AuditCursor{Time: rows[1].Time, Node: "n1", Seq: 2}}, rows[2:4]},
		} {
			got, err := db.ListAuditRows(ctx, tc.q)
			if err != nil || !slices.EqualFunc(got, tc.want, sameRow) {
				t.Errorf("%s: ListAuditRows = %+v, %v; want %+v", tc.name, got, err, tc.want)
			}
		}
	})
}

// sameRow compares rows, times at the stored microsecond precision.
func sameRow(a, b coffer.AuditRow) bool {
	ta, tb := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

// TestAuditKeyVersionMigration: checkpoints stored before migration 3
// read back as signed by version 1, new ones keep theirs, and the audit
// tables stay append-only.
func TestAuditKeyVersionMigration(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := store.Open(ctx, b.DSN(t), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			if err := db.MigrateUpTo(ctx, 2); err != nil {
				t.Fatal(err)
			}
			old := auditCheckpoint(1, 0)
			if err := db.ExecRaw(ctx, `INSERT INTO audit_checkpoints (node, seq, hash, time, signature) VALUES ($1, $2, $3, $4, $5)`,
				old.Node, int64(old.Seq), old.Hash, old.Time.UnixMicro(), old.Signature); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := db.AppendAuditRows(ctx, nil, []coffer.AuditCheckpoint{auditCheckpoint(2, 5)}); err != nil {
				t.Fatal(err)
			}
			if got, want := checkpointVersions(t, db), []uint32{1, 5}; !slices.Equal(got, want) {
				t.Fatalf("checkpoint key versions %v, want %v", got, want)
			}
			blob := "X'00'"
			if b.Name == store.Postgres {
				blob = `'\x00'::bytea`
			}
			insert := `INSERT INTO audit_checkpoints (node, seq, hash, time, signature, key_version) VALUES ('n1', 3, 'h', 1, ` + blob + `, `
			for _, q := range []string{
				`UPDATE audit_checkpoints SET key_version = 2 WHERE seq = 1`,
				`DELETE FROM audit_checkpoints WHERE seq = 2`,
				insert + `0)`,
			} {
				if err := db.ExecRaw(ctx, q); err == nil {
					t.Errorf("%s: accepted", q)
				}
			}
			if err := db.ExecRaw(ctx, insert+`1)`); err != nil { // the same insert with a valid version goes in
				t.Fatal(err)
			}
			if got, want := checkpointVersions(t, db), []uint32{1, 5, 1}; !slices.Equal(got, want) {
				t.Fatalf("after refused writes: checkpoint key versions %v, want %v", got, want)
			}
		})
	}
}

// BenchmarkAppendAudit appends batches of 1 to 128 events the size of a
// record read's, one transaction each: what one commit costs apart from
// what each event costs. It appends through the audit log's Rows, so
// that each event's encoding is counted, as the server's appends do. cpu-µs/event is this process's CPU (on
// PostgreSQL the server's own is left out).
func BenchmarkAppendAudit(b *testing.B) {
	for _, be := range storetest.Backends() {
		for _, n := range []int{1, 8, 32, 128} {
			b.Run(fmt.Sprintf("%s/%d-per-append", be.Name, n), func(b *testing.B) {
				db := audit.OnRows(storetest.Open(b, be))
				ctx := context.Background()
				var seq uint64
				prev := audit.Genesis("n1")
				events := make([]audit.Event, n)
				cpu0 := storetest.ProcessCPU()
				b.ResetTimer()
				for b.Loop() {
					for j := range events {
						seq++
						events[j] = audit.Event{ID: audit.EventID("n1", seq), Seq: seq, Node: "n1", Time: time.Now().UTC().Truncate(time.Microsecond),
							RequestID: "8a7c0e6b1f2d3c4b5a697887", PrincipalID: "client-admin", PrincipalKind: "client", Roles: []string{"admin"},
							SourceIP: "127.0.0.1", Action: "read", Resource: "collections/customers/rec_01JDQ4V6X9ZK3M8N2P5R7T0W1Y",
							Fields: []string{"name", "email", "card_number", "ssn"}, Decision: "allow", Rule: "admin-all", Status: 200, Count: 1,
							PrevHash: prev, Hash: fmt.Sprintf("%064x", seq), KeyVersion: 1}
						prev = events[j].Hash
					}
					if err := db.AppendAudit(ctx, events, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((storetest.ProcessCPU()-cpu0).Microseconds())/float64(b.N*n), "cpu-µs/event")
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/event")
			})
		}
	}
}
