package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
)

// TestNodeLeaseHasOneHolder: a node id's lease is held by one instance at
// a time; another takes it only once it is released or has run out.
func TestNodeLeaseHasOneHolder(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
		lease := func(inst string, at time.Time) bool {
			t.Helper()
			ok, err := db.AcquireNodeLease(ctx, coffer.Node{ID: "n1", Instance: inst, Host: "h-" + inst, Version: "v",
				SchemaVersion: 15, StartedAt: at, HeartbeatAt: at, LeaseUntil: at.Add(10 * time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !lease("a", t0) {
			t.Fatal("a free id was not leased")
		}
		if lease("b", t0.Add(5*time.Second)) {
			t.Fatal("a held lease was taken by another instance")
		}
		if ok, err := db.RenewNodeLease(ctx, "n1", "a", t0.Add(8*time.Second), t0.Add(18*time.Second)); err != nil || !ok {
			t.Fatalf("renew = %v, %v", ok, err)
		}
		if lease("b", t0.Add(12*time.Second)) {
			t.Fatal("a renewed lease was taken")
		}
		if !lease("b", t0.Add(18*time.Second)) {
			t.Fatal("a lease that ran out was not taken over")
		}
		if ok, err := db.RenewNodeLease(ctx, "n1", "a", t0.Add(19*time.Second), t0.Add(29*time.Second)); err != nil || ok {
			t.Fatalf("the former holder renewed: %v, %v", ok, err)
		}
		n, err := db.Node(ctx, "n1")
		if err != nil || n.Instance != "b" || n.Host != "h-b" || n.SchemaVersion != 15 || !n.HeartbeatAt.Equal(t0.Add(18*time.Second)) {
			t.Fatalf("node = %+v, %v", n, err)
		}
		if err := db.ReleaseNodeLease(ctx, "n1", "b"); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.RenewNodeLease(ctx, "n1", "b", t0.Add(19*time.Second), t0.Add(29*time.Second)); err != nil || ok {
			t.Fatalf("a released lease was renewed: %v, %v", ok, err)
		}
		if !lease("c", t0.Add(19*time.Second)) {
			t.Fatal("a released lease was not taken at once")
		}
		if _, err := db.Node(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown node: %v", err)
		}
		all, err := db.Nodes(ctx)
		if err != nil || len(all) != 1 || all[0].ID != "n1" {
			t.Fatalf("nodes = %+v, %v", all, err)
		}
	})
}
