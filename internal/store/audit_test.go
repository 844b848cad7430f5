package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

func auditEvent(seq uint64, v uint32) audit.Event {
	return audit.Event{ID: audit.EventID("n1", seq), Seq: seq, Node: "n1", Time: t0.Add(time.Duration(seq) * time.Second),
		PrincipalID: "client-1", Action: "read", Resource: "collections/customers", Status: 200,
		PrevHash: audit.Genesis("n1"), Hash: audit.Genesis("n2"), KeyVersion: v}
}

func auditCheckpoint(seq uint64, v uint32) audit.Checkpoint {
	return audit.Checkpoint{Node: "n1", Seq: seq, Hash: audit.Genesis("n2"), Time: t0.Add(time.Duration(seq) * time.Second),
		Signature: []byte{1, 2, 3}, KeyVersion: v}
}

func eventVersions(t *testing.T, db *store.DB) []uint32 {
	t.Helper()
	var out []uint32
	err := db.ScanAudit(context.Background(), "n1", 0, func(e audit.Event) error {
		out = append(out, e.KeyVersion)
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

// TestAuditKeyVersionsRoundTrip: the key version of every event (in its
// body) and checkpoint (in its column) reads back as written, through
// PostgreSQL's one-statement append and the transaction path that SQLite
// always takes with its prepared statements (run twice, so the second time
// uses the cached ones).
func TestAuditKeyVersionsRoundTrip(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		appends := []struct {
			events []audit.Event
			cps    []audit.Checkpoint
		}{
			{[]audit.Event{auditEvent(1, 1)}, []audit.Checkpoint{auditCheckpoint(1, 0)}}, // one statement on PostgreSQL
			{[]audit.Event{auditEvent(2, 2), auditEvent(3, 2)}, []audit.Checkpoint{auditCheckpoint(2, 2), auditCheckpoint(3, 3)}},
			{[]audit.Event{auditEvent(4, 7), auditEvent(5, 7)}, []audit.Checkpoint{auditCheckpoint(4, 3), auditCheckpoint(5, 9)}},
			{nil, []audit.Checkpoint{auditCheckpoint(6, 12)}},
		}
		for i, a := range appends {
			if err := db.AppendAudit(ctx, a.events, a.cps); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		if got, want := eventVersions(t, db), []uint32{1, 2, 2, 7, 7}; !slices.Equal(got, want) {
			t.Fatalf("event key versions %v, want %v", got, want)
		}
		// A checkpoint without a version was signed by version 1.
		if got, want := checkpointVersions(t, db), []uint32{1, 2, 3, 3, 9, 12}; !slices.Equal(got, want) {
			t.Fatalf("checkpoint key versions %v, want %v", got, want)
		}
		listed, err := db.ListAudit(ctx, audit.Filter{Principal: "client-1"})
		if err != nil || len(listed) != 5 || listed[3].KeyVersion != 7 {
			t.Fatalf("ListAudit = %+v, %v", listed, err)
		}
	})
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
			if err := db.AppendAudit(ctx, nil, []audit.Checkpoint{auditCheckpoint(2, 5)}); err != nil {
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
// what each event costs. cpu-µs/event is this process's CPU (on
// PostgreSQL the server's own is left out).
func BenchmarkAppendAudit(b *testing.B) {
	for _, be := range storetest.Backends() {
		for _, n := range []int{1, 8, 32, 128} {
			b.Run(fmt.Sprintf("%s/%d-per-append", be.Name, n), func(b *testing.B) {
				db := storetest.Open(b, be)
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

// TestAuditColumnsCheckedAgainstBodies edits the columns kept beside an
// event's body, past the append-only triggers: a scan names the event and
// the column, and a listing answers from the bodies, reports the row, and
// serves it only when its body matches the filter.
func TestAuditColumnsCheckedAgainstBodies(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		events := []audit.Event{auditEvent(1, 1), auditEvent(2, 1), auditEvent(3, 1)}
		if err := db.AppendAudit(ctx, events, nil); err != nil {
			t.Fatal(err)
		}
		drop := `DROP TRIGGER audit_events_no_update`
		if db.Dialect() == store.Postgres {
			drop = `DROP TRIGGER audit_events_append_only ON audit_events`
		}
		if err := db.ExecRaw(ctx, drop); err != nil {
			t.Fatal(err)
		}
		if err := db.ExecRaw(ctx, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 2`); err != nil {
			t.Fatal(err)
		}
		var cerr *audit.CorruptEventError
		err := db.ScanAudit(ctx, "n1", 0, func(audit.Event) error { return nil })
		if !errors.As(err, &cerr) || cerr.Seq != 2 || cerr.Column != "principal" {
			t.Fatalf("ScanAudit = %v; want the principal column of seq 2 named", err)
		}
		p, err := db.ListAuditPage(ctx, audit.Filter{Principal: "mallory"})
		if err != nil || len(p.Events) != 0 || len(p.Corrupt) != 1 || p.Corrupt[0].Seq != 2 || p.More || p.Last == nil || p.Last.Seq != 2 {
			t.Fatalf("?principal=mallory: %+v, %v; want no event and seq 2 reported", p, err)
		}
		p, err = db.ListAuditPage(ctx, audit.Filter{Principal: "client-1", Limit: 1})
		if err != nil || len(p.Events) != 1 || !p.More || p.Last.Seq != 1 {
			t.Fatalf("?principal=client-1&limit=1: %+v, %v", p, err)
		}
		// Unfiltered, the relabelled row still answers from its body.
		p, err = db.ListAuditPage(ctx, audit.Filter{})
		if err != nil || len(p.Events) != 3 || p.Events[1].PrincipalID != "client-1" || len(p.Corrupt) != 1 {
			t.Fatalf("unfiltered: %+v, %v", p, err)
		}
		if err := db.ExecRaw(ctx, `UPDATE audit_events SET body = '{"id":1}' WHERE seq = 3`); err != nil {
			t.Fatal(err)
		}
		p, err = db.ListAuditPage(ctx, audit.Filter{})
		if err != nil || len(p.Events) != 2 || len(p.Corrupt) != 2 || p.Corrupt[1].Column != "" {
			t.Fatalf("with an undecodable body: %+v, %v", p, err)
		}
	})
}
