package store_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
)

// TestDataKeyUses: counts added by several writers at once all arrive,
// per version, with their rewrap counts, and DataKeys returns them; a
// missing version is no error.
func TestDataKeyUses(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for v := uint32(1); v <= 2; v++ {
			k := coffer.DataKey{KeyID: "collection/u", Version: v, Wrapped: []byte{byte(v)}, State: coffer.KeyActive, Created: t0}
			if err := db.InsertDataKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		ks, err := db.DataKeys(ctx, "collection/u")
		if err != nil || len(ks) != 2 || ks[0].Uses != 0 || ks[1].Uses != 0 || ks[0].RewrapUses != 0 || ks[1].RewrapUses != 0 {
			t.Fatalf("new versions: %+v %v", ks, err)
		}
		var wg sync.WaitGroup
		for range 8 { // like nodes flushing at the same time
			wg.Go(func() {
				for range 5 {
					if err := db.AddDataKeyUses(ctx, "collection/u", 2, 3, 1); err != nil {
						t.Error(err)
					}
				}
			})
		}
		// Both counts move in one step: a reader never sees one without
		// the other.
		done := make(chan struct{})
		var reader sync.WaitGroup
		reader.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				ks, err := db.DataKeys(ctx, "collection/u")
				if err != nil {
					t.Error(err)
					return
				}
				if ks[1].Uses != 3*ks[1].RewrapUses {
					t.Errorf("torn counts: %d uses, %d rewrap uses", ks[1].Uses, ks[1].RewrapUses)
					return
				}
			}
		})
		wg.Wait()
		close(done)
		reader.Wait()
		if err := db.AddDataKeyUses(ctx, "collection/u", 1, 1<<40, 1<<40); err != nil {
			t.Fatal(err)
		}
		if err := db.AddDataKeyUses(ctx, "collection/u", 1, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := db.AddDataKeyUses(ctx, "collection/none", 1, 5, 2); err != nil {
			t.Fatalf("missing key: %v", err)
		}
		for _, c := range []struct{ uses, rewrap uint64 }{{1 << 63, 0}, {1 << 63, 1 << 63}, {2, 3}, {0, 1}} {
			if err := db.AddDataKeyUses(ctx, "collection/u", 1, c.uses, c.rewrap); err == nil {
				t.Fatalf("%d uses with %d rewrap uses accepted", c.uses, c.rewrap)
			}
		}
		ks, err = db.DataKeys(ctx, "collection/u")
		if err != nil || len(ks) != 2 || ks[0].Uses != 1<<40 || ks[0].RewrapUses != 1<<40 ||
			ks[1].Uses != 8*5*3 || ks[1].RewrapUses != 8*5 {
			t.Fatalf("uses: %+v %v", ks, err)
		}
		// Rewrapping under a new root key leaves the count alone.
		if err := db.ReplaceWrapped(ctx, "collection/u", 2, []byte{2}, []byte{9}); err != nil {
			t.Fatal(err)
		}
		if ks, _ = db.DataKeys(ctx, "collection/u"); ks[1].Uses != 120 || ks[1].RewrapUses != 40 {
			t.Fatalf("uses after ReplaceWrapped: %+v", ks)
		}
	})
}

// TestDueDataKeys: only the current version of live key ids under the
// prefix, and only when it is too old or too used, page by page.
func TestDueDataKeys(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		day := 24 * time.Hour
		add := func(id string, v uint32, state string, created time.Time, uses uint64) {
			t.Helper()
			k := coffer.DataKey{KeyID: id, Version: v, Wrapped: []byte{1}, State: state, Created: created}
			if err := db.InsertDataKey(ctx, k); err != nil {
				t.Fatal(err)
			}
			if err := db.AddDataKeyUses(ctx, id, v, uses, uses/2); err != nil {
				t.Fatal(err)
			}
		}
		old, young := t0.Add(-100*day), t0.Add(-day)
		add("collection/old", 1, coffer.KeyActive, old, 0)          // due by age
		add("collection/used", 1, coffer.KeyActive, young, 11)      // due by use
		add("collection/fresh", 1, coffer.KeyActive, young, 10)     // not due: 10 is not over 10
		add("collection/rotated", 1, coffer.KeyActive, old, 50)     // an old version…
		add("collection/rotated", 2, coffer.KeyActive, young, 0)    // …but the current one is young
		add("collection/retired", 1, coffer.KeyActive, old, 0)      // the current version: due
		add("collection/retired", 2, coffer.KeyRetired, young, 0)   // a retired newer one does not count
		add("collection/shredded", 1, coffer.KeyDestroyed, old, 99) // destroyed: never due
		add("subject/s1", 1, coffer.KeyActive, old, 0)              // other prefix
		add("collectionx/zzz", 1, coffer.KeyActive, old, 99)        // other prefix, close to this one
		ids := func(q coffer.DueKeyQuery) []string {
			t.Helper()
			var out []string
			for {
				ks, err := db.DueDataKeys(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range ks {
					out = append(out, k.KeyID+"@"+string(rune('0'+k.Version)))
					if k.Wrapped != nil || k.State != coffer.KeyActive || k.RewrapUses != k.Uses/2 {
						t.Fatalf("due key %+v", k)
					}
				}
				if len(ks) < q.Limit {
					return out
				}
				q.After = ks[len(ks)-1].KeyID
			}
		}
		cut := t0.Add(-90 * day)
		for _, c := range []struct {
			name string
			q    coffer.DueKeyQuery
			want []string
		}{
			{"age and uses", coffer.DueKeyQuery{Prefix: "collection/", CreatedBefore: cut, UsesOver: 10, Limit: 100},
				[]string{"collection/old@1", "collection/retired@1", "collection/used@1"}},
			{"paged by one", coffer.DueKeyQuery{Prefix: "collection/", CreatedBefore: cut, UsesOver: 10, Limit: 1},
				[]string{"collection/old@1", "collection/retired@1", "collection/used@1"}},
			{"age only", coffer.DueKeyQuery{Prefix: "collection/", CreatedBefore: cut, Limit: 100},
				[]string{"collection/old@1", "collection/retired@1"}},
			{"uses only", coffer.DueKeyQuery{Prefix: "collection/", UsesOver: 10, Limit: 100},
				[]string{"collection/used@1"}},
			{"neither rule", coffer.DueKeyQuery{Prefix: "collection/", Limit: 100}, nil},
			{"subjects by uses", coffer.DueKeyQuery{Prefix: "subject/", UsesOver: 10, Limit: 100}, nil},
			{"subjects by age", coffer.DueKeyQuery{Prefix: "subject/", CreatedBefore: cut, Limit: 100},
				[]string{"subject/s1@1"}},
		} {
			if got := ids(c.q); !slices.Equal(got, c.want) {
				t.Errorf("%s: due %v, want %v", c.name, got, c.want)
			}
		}
		if _, err := db.DueDataKeys(ctx, coffer.DueKeyQuery{Prefix: "collection/"}); err == nil {
			t.Error("limit 0 accepted")
		}
	})
}
