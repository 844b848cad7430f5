package audit_test

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// legacyStore appends as Coffer did before migration 20: JSON rows in
// audit_events.
type legacyStore struct {
	audit.Rows
	db *store.DB
}

func (l legacyStore) AppendAudit(ctx context.Context, events []audit.Event, cps []audit.Checkpoint) error {
	rows := make([]coffer.AuditRow, len(events))
	for i := range events {
		b, err := events[i].MarshalJSON()
		if err != nil {
			return err
		}
		rows[i] = coffer.AuditRow{AuditColumns: audit.ColumnsOf(&events[i]), Body: string(b)}
	}
	return l.db.AppendAuditRows(ctx, rows, cps)
}

// logEvents logs n record reads through a writer on st, in batches.
func logEvents(t testing.TB, st audit.Store, n int) {
	t.Helper()
	ctx := context.Background()
	w, err := audit.NewWriter(ctx, st, audit.WriterConfig{Node: "n1", Keys: keys, CheckpointEvery: 16, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- w.Log(ctx, audit.Event{RequestID: "fe569e3d192dfae3f6dd60b7", PrincipalID: "cl_5065fr0gxdh04d8sbzmp",
				PrincipalKind: "client", Roles: []string{"admin"}, SourceIP: "127.0.0.1", Action: "read",
				Resource: "collections/customers", Fields: []string{"card_number", "email"}, Decision: audit.DecisionAllow,
				Rule: "admin[0]", Status: 200, Count: i,
				Targets: []string{"collections/customers/records/01a24403-9575-782e-849f-3b3f174b8fcf"}})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestChainGoesOnFromJSONRowsIntoCompactRecords: a log written before
// migration 20 (JSON rows) and continued after it (compact records) is one
// chain: it verifies, lists in order with every prev_hash, and an edit or
// deletion of a compact record is found.
func TestChainGoesOnFromJSONRowsIntoCompactRecords(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.DSN(t)
			raw, err := store.Open(ctx, dsn, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = raw.Close() })
			if err := raw.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			db := audit.OnRows(raw)
			logEvents(t, legacyStore{db, raw}, 40)
			logEvents(t, db, 200)
			rep, err := audit.Verify(ctx, db, lookup)
			if err != nil || rep.Events != 240 || rep.Checkpoints < 14 {
				t.Fatalf("Verify = %+v, %v; want 240 events", rep, err)
			}
			// Records of a batch leave prev_hash out but the first: some
			// must have, or the test shows nothing.
			omitted := 0
			if err := raw.ScanAuditRecords(ctx, "n1", 0, func(r *coffer.AuditRecord) error {
				if !audit.BodyHasPrev(r.Body) {
					omitted++
				}
				return nil
			}); err != nil || omitted == 0 {
				t.Fatalf("%d records without prev_hash, %v", omitted, err)
			}
			var all []audit.Event
			for f := (audit.Filter{Limit: 7}); ; {
				p, err := db.ListAuditPage(ctx, f)
				if err != nil || len(p.Corrupt) > 0 {
					t.Fatal(p.Corrupt, err)
				}
				all = append(all, p.Events...)
				if !p.More {
					break
				}
				f.After = p.Last
			}
			if len(all) != 240 {
				t.Fatalf("listed %d events", len(all))
			}
			// Listed by time, which the writer takes before it orders
			// events into the chain.
			slices.SortFunc(all, func(a, b audit.Event) int { return cmp.Compare(a.Seq, b.Seq) })
			prev := audit.Genesis("n1")
			for i, e := range all {
				if e.Seq != uint64(i+1) || e.PrevHash != prev || e.ID != audit.EventID("n1", e.Seq) {
					t.Fatalf("listed event %d: seq %d, prev_hash %q, want %q", i, e.Seq, e.PrevHash, prev)
				}
				if i >= 40 && (e.SourceIP != "127.0.0.1" || e.Targets[0] != "collections/customers/records/01a24403-9575-782e-849f-3b3f174b8fcf") {
					t.Fatalf("listed event %d: %+v", i, e)
				}
				prev = e.Hash
			}
			// From the middle, as a sink's catch-up reads.
			var first *audit.Event
			if err := db.ScanAudit(ctx, "n1", 100, func(e audit.Event) error {
				if first == nil {
					first = &e
				}
				return nil
			}); err != nil || first == nil || first.PrevHash != all[99].Hash {
				t.Fatalf("scan after 100: %+v, %v", first, err)
			}

			intruder := storetest.Intruder(t, dsn)
			if _, err := intruder.ExecContext(ctx, `UPDATE audit_log SET principal = 'mallory' WHERE seq = 120`); err != nil {
				t.Fatal(err)
			}
			var verr *audit.VerifyError
			if _, err := audit.Verify(ctx, db, lookup); !errors.As(err, &verr) || verr.Seq != 120 || !strings.Contains(verr.Reason, "hash") {
				t.Fatalf("principal edited: Verify = %v", err)
			}
			if _, err := intruder.ExecContext(ctx, `UPDATE audit_log SET principal = $1 WHERE seq = 120`, all[119].PrincipalID); err != nil {
				t.Fatal(err)
			}
			if _, err := audit.Verify(ctx, db, lookup); err != nil {
				t.Fatalf("restored: %v", err)
			}
			if _, err := intruder.ExecContext(ctx, `DELETE FROM audit_log WHERE seq = 150`); err != nil {
				t.Fatal(err)
			}
			if _, err := audit.Verify(ctx, db, lookup); !errors.As(err, &verr) || verr.Seq != 150 {
				t.Fatalf("record deleted: Verify = %v", err)
			}
		})
	}
}
