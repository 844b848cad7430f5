package audit_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// listAll pages through the checked listing of f and returns its events
// and the seqs of the rows it flagged.
func listAll(t *testing.T, db audit.Rows, f audit.Filter) ([]audit.Event, []uint64) {
	t.Helper()
	var (
		evs  []audit.Event
		seqs []uint64
	)
	for {
		p, err := db.ListAuditPageChecked(context.Background(), f, lookup)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, p.Events...)
		for _, c := range p.Corrupt {
			if !errors.Is(c.Err, audit.ErrHashMismatch) || c.Column != "" {
				t.Fatalf("flagged %v; want a hash mismatch", c)
			}
			seqs = append(seqs, c.Seq)
		}
		if !p.More {
			slices.Sort(seqs)
			return evs, seqs
		}
		f.After = p.Last
	}
}

// TestCheckedListingFlagsEditedRows: the checked listing recomputes each
// row's hash, so a compact record relabelled through its principal,
// action or time column, or a JSON row whose body and column were edited
// together, is never served (as matching a filter or at all) and is
// flagged; an intact log, paged in any size and filtered (prev_hash then
// comes from the stored seq-1), flags nothing.
func TestCheckedListingFlagsEditedRows(t *testing.T) {
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
			logEvents(t, legacyStore{db, raw}, 20) // seq 1-20, JSON rows
			logEvents(t, db, 60)                   // seq 21-80, compact records
			for _, f := range []audit.Filter{{Limit: 1}, {Limit: 7}, {Limit: audit.MaxListLimit},
				{Principal: "cl_5065fr0gxdh04d8sbzmp", Limit: 3}, {Action: "read", Limit: 2}} {
				evs, flagged := listAll(t, db, f)
				if len(evs) != 80 || len(flagged) != 0 {
					t.Fatalf("intact log, %+v: %d events, flagged %v", f, len(evs), flagged)
				}
			}

			intruder := storetest.Intruder(t, dsn)
			future := time.Now().Add(24 * time.Hour)
			for _, q := range []struct {
				stmt string
				args []any
			}{
				{`UPDATE audit_log SET principal = 'mallory' WHERE seq = 30`, nil},
				{`UPDATE audit_log SET action = 'delete' WHERE seq = 40`, nil},
				{`UPDATE audit_log SET time = $1 WHERE seq = 50`, []any{future.UnixMicro()}},
				// A JSON row's column and body edited together: they agree.
				{`UPDATE audit_events SET principal = 'mallory', body = replace(body, 'cl_5065fr0gxdh04d8sbzmp', 'mallory') WHERE seq = 10`, nil},
			} {
				if res, err := intruder.ExecContext(ctx, q.stmt, q.args...); err != nil {
					t.Fatal(err)
				} else if n, _ := res.RowsAffected(); n != 1 {
					t.Fatalf("%s: %d rows", q.stmt, n)
				}
			}
			// Unchecked, the relabelled rows are served as matching.
			p, err := db.ListAuditPage(ctx, audit.Filter{Principal: "mallory"})
			if err != nil || len(p.Events) != 2 {
				t.Fatalf("unchecked ?principal=mallory: %d events, %v; want the 2 relabelled", len(p.Events), err)
			}
			for _, c := range []struct {
				f    audit.Filter
				want []uint64
			}{
				{audit.Filter{Principal: "mallory"}, []uint64{10, 30}},
				{audit.Filter{Action: "delete"}, []uint64{40}},
				{audit.Filter{Since: future.Add(-time.Minute)}, []uint64{50}},
				{audit.Filter{Limit: 9}, []uint64{10, 30, 40, 50}},
			} {
				evs, flagged := listAll(t, db, c.f)
				if !slices.Equal(flagged, c.want) {
					t.Errorf("%+v: flagged %v, want %v", c.f, flagged, c.want)
				}
				for _, e := range evs {
					if slices.Contains(c.want, e.Seq) {
						t.Errorf("%+v: served edited event %s", c.f, e.ID)
					}
				}
				if c.f.Limit == 9 && len(evs) != 76 {
					t.Errorf("unfiltered: %d events, want the 76 intact", len(evs))
				}
			}
		})
	}
}

// BenchmarkListAuditPage lists a page of 1000 compact records on SQLite,
// without and with the hash of each recomputed (ListAuditPageChecked),
// the two interleaved in every iteration (the order alternating): what
// the check costs the events API.
func BenchmarkListAuditPage(b *testing.B) {
	ctx := context.Background()
	db := audit.OnRows(storetest.Open(b, storetest.Backends()[0]))
	logEvents(b, db, 2000)
	f := audit.Filter{Limit: audit.MaxListLimit}
	lists := [2]func() (audit.Page, error){
		func() (audit.Page, error) { return db.ListAuditPage(ctx, f) },
		func() (audit.Page, error) { return db.ListAuditPageChecked(ctx, f, lookup) },
	}
	var spent [2]time.Duration
	n := 0
	for b.Loop() {
		for k := range 2 {
			i := (n + k) % 2
			start := time.Now()
			p, err := lists[i]()
			spent[i] += time.Since(start)
			if err != nil || len(p.Events) != audit.MaxListLimit || len(p.Corrupt) != 0 {
				b.Fatal(len(p.Events), p.Corrupt, err)
			}
		}
		n++
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(n) }
	b.ReportMetric(per(spent[0])/1e6, "ms/page-unchecked")
	b.ReportMetric(per(spent[1])/1e6, "ms/page-checked")
	b.ReportMetric((per(spent[1])-per(spent[0]))/audit.MaxListLimit, "ns/event-check")
	b.ReportMetric(per(spent[1])/per(spent[0]), "ratio")
}
