package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
)

// TestJobLeaseFencing: a job's lease has one holder at a time; its fencing
// token grows when the lease changes hands and stays while its holder
// renews it in time; a stale holder (its lease run out and taken by
// another node) has every write refused, and cannot release the new
// holder's lease.
func TestJobLeaseFencing(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCollection(t, db, "customers")
		exp := t0.Add(-time.Hour) // expired: the purge would delete it
		r := coffer.SealedRecord{ID: "r1", Collection: "customers", KeyID: "collection/customers",
			CreatedAt: t0, UpdatedAt: t0, ExpiresAt: &exp, Values: map[string][]byte{"email": {1}}}
		if err := db.InsertRecord(ctx, r, nil); err != nil {
			t.Fatal(err)
		}

		a, ok, err := db.AcquireLease(ctx, "purge", "node-a", t0, time.Second)
		if err != nil || !ok || a.Fence < 1 || a.Holder != "node-a" || !a.Until.Equal(t0.Add(time.Second)) {
			t.Fatalf("first lease: %+v %v %v", a, ok, err)
		}
		// Renewed in time: the same token.
		a2, ok, err := db.AcquireLease(ctx, "purge", "node-a", t0.Add(500*time.Millisecond), time.Second)
		if err != nil || !ok || a2.Fence != a.Fence {
			t.Fatalf("renewal: %+v %v %v (was fence %d)", a2, ok, err, a.Fence)
		}
		// Another node waits while it lives.
		if _, ok, err := db.AcquireLease(ctx, "purge", "node-b", t0.Add(time.Second), time.Second); err != nil || ok {
			t.Fatalf("node-b while node-a's lease lives: %v %v", ok, err)
		}
		// node-a stalls past its lease; node-b takes the job over.
		late := t0.Add(2 * time.Second)
		b, ok, err := db.AcquireLease(ctx, "purge", "node-b", late, time.Minute)
		if err != nil || !ok || b.Fence <= a.Fence {
			t.Fatalf("take-over: %+v %v %v (stale fence %d)", b, ok, err, a.Fence)
		}
		// Every write of the stale holder is refused, and changes nothing.
		if _, err := db.PurgeExpired(ctx, a2, late, 10); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("stale purge: %v", err)
		}
		if _, err := db.Record(ctx, "customers", "r1"); err != nil {
			t.Fatalf("the stale purge deleted: %v", err)
		}
		if err := db.SetJobState(ctx, a2, `{"stale":true}`, late); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("stale state: %v", err)
		}
		moved := r
		moved.Values = map[string][]byte{"email": {2}}
		if _, err := db.ReplaceValues(ctx, a2, late, []coffer.SealedRecord{moved}, []map[string][]byte{r.Values}); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("stale rewrap: %v", err)
		}
		if err := db.CheckLease(ctx, a2, late); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("stale check: %v", err)
		}
		if _, ok, err := db.AcquireLease(ctx, "purge", "node-a", late, time.Second); err != nil || ok {
			t.Fatalf("the stale holder renews: %v %v", ok, err)
		}
		if err := db.ReleaseLease(ctx, a2); err != nil {
			t.Fatal(err)
		}
		// The new holder's lease was not released by the stale one, and
		// its writes go through.
		if err := db.CheckLease(ctx, b, late); err != nil {
			t.Fatalf("the holder after a stale release: %v", err)
		}
		if err := db.SetJobState(ctx, b, `{"ok":true}`, late); err != nil {
			t.Fatal(err)
		}
		if st, err := db.JobState(ctx, "purge"); err != nil || st != `{"ok":true}` {
			t.Fatalf("state: %q %v", st, err)
		}
		if n, err := db.PurgeExpired(ctx, b, late, 10); err != nil || n != 1 {
			t.Fatalf("purge by the holder: %d %v", n, err)
		}
		// Even the holder's own writes stop once its lease ran out.
		if err := db.SetJobState(ctx, b, `{}`, late.Add(time.Hour)); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("a write after the lease ran out: %v", err)
		}
		// Released, then taken again by the same node: a new token.
		if err := db.ReleaseLease(ctx, b); err != nil {
			t.Fatal(err)
		}
		b2, ok, err := db.AcquireLease(ctx, "purge", "node-b", late, time.Minute)
		if err != nil || !ok || b2.Fence <= b.Fence {
			t.Fatalf("retaken: %+v %v %v (was fence %d)", b2, ok, err, b.Fence)
		}
		if err := db.SetJobState(ctx, b, `{}`, late); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("the released lease writes: %v", err)
		}
	})
}
