package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
)

// TestIdempotencyKeyClaims: a key is claimed once per principal; a done
// key holds its answer until it expires; a pending claim is taken over
// only by the same request, once its claim ran out or its node's lease
// did; a released claim is free again; expired keys are purged.
func TestIdempotencyKeyClaims(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		claim := func(principal, key, owner, instance string, fp byte, at time.Time) (coffer.IdempotencyKey, bool) {
			t.Helper()
			k, ok, err := db.ClaimIdempotencyKey(ctx, coffer.IdempotencyKey{Principal: principal, Key: key,
				Fingerprint: []byte{fp}, Owner: owner, Instance: instance, ClaimUntil: at.Add(time.Minute),
				CreatedAt: at, ExpiresAt: at.Add(24 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			return k, ok
		}
		// A live node holds instance i-live.
		if ok, err := db.AcquireNodeLease(ctx, coffer.Node{ID: "n1", Instance: "i-live", Host: "h", Version: "v", SchemaVersion: 18,
			StartedAt: t0, HeartbeatAt: t0, LeaseUntil: t0.Add(time.Hour)}); err != nil || !ok {
			t.Fatalf("node lease: %v %v", ok, err)
		}
		if _, ok := claim("client:a", "k1", "o1", "i-live", 1, t0); !ok {
			t.Fatal("first claim refused")
		}
		// The same request again while the first runs on a live node.
		cur, ok := claim("client:a", "k1", "o2", "i-live", 1, t0.Add(time.Second))
		if ok || cur.State != coffer.IdempotencyPending || cur.Owner != "o1" {
			t.Fatalf("duplicate while pending: %+v %v", cur, ok)
		}
		// Another principal's same key is its own.
		if _, ok := claim("client:b", "k1", "o3", "i-live", 9, t0); !ok {
			t.Fatal("another principal's key refused")
		}
		done, err := db.CompleteIdempotencyKey(ctx, "client:a", "k1", "o1", 201, "application/json", []byte("sealed"))
		if err != nil || !done {
			t.Fatalf("complete: %v %v", done, err)
		}
		if ok, _ := db.CompleteIdempotencyKey(ctx, "client:a", "k1", "o2", 500, "", nil); ok {
			t.Fatal("another owner completed the key")
		}
		cur, ok = claim("client:a", "k1", "o4", "i-live", 1, t0.Add(2*time.Minute))
		if ok || cur.State != coffer.IdempotencyDone || cur.Status != 201 || string(cur.Body) != "sealed" || cur.ContentType != "application/json" {
			t.Fatalf("retry of a done key: %+v %v", cur, ok)
		}
		// Another request with a done key: the row says so (fingerprint).
		if cur, ok := claim("client:a", "k1", "o5", "i-live", 2, t0.Add(2*time.Minute)); ok || cur.Fingerprint[0] != 1 {
			t.Fatalf("another request: %+v %v", cur, ok)
		}
		// Expired: the key is new again.
		if _, ok := claim("client:a", "k1", "o6", "i-live", 2, t0.Add(25*time.Hour)); !ok {
			t.Fatal("an expired key was not claimed again")
		}

		// A claim by a process whose node lease ran out (it died): taken
		// over at once by the same request, never by another.
		if _, ok := claim("client:a", "k2", "o7", "i-dead", 1, t0); !ok {
			t.Fatal("claim")
		}
		if _, ok := claim("client:a", "k2", "o8", "i-live", 2, t0.Add(time.Second)); ok {
			t.Fatal("another request took over a dead node's claim")
		}
		if k, ok := claim("client:a", "k2", "o8", "i-live", 1, t0.Add(time.Second)); !ok || k.Owner != "o8" {
			t.Fatalf("the retry did not take over a dead node's claim: %+v %v", k, ok)
		}
		// A claim run out is taken over by the same request.
		if _, ok := claim("client:a", "k3", "o9", "i-live", 1, t0); !ok {
			t.Fatal("claim")
		}
		if _, ok := claim("client:a", "k3", "o10", "i-live", 1, t0.Add(2*time.Minute)); !ok {
			t.Fatal("a run-out claim was not taken over")
		}
		// Released: free at once.
		if err := db.ReleaseIdempotencyKey(ctx, "client:a", "k3", "o10"); err != nil {
			t.Fatal(err)
		}
		if _, ok := claim("client:a", "k3", "o11", "i-live", 3, t0.Add(2*time.Minute)); !ok {
			t.Fatal("a released key was not free")
		}
		// Purge.
		n, err := db.PurgeIdempotencyKeys(ctx, t0.Add(48*time.Hour), 100)
		if err != nil || n < 3 {
			t.Fatalf("purge: %d %v", n, err)
		}
		if _, err := db.IdempotencyKey(ctx, "client:b", "k1"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("purged key: %v", err)
		}
	})
}

// TestIsUnavailable: the error of a database that cannot be reached says
// so, a bad request's does not.
func TestIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := store.Open(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", store.Options{})
	if err == nil {
		err = db.Ping(ctx)
		_ = db.Close()
	}
	if err == nil || !store.IsUnavailable(err) {
		t.Fatalf("unreachable database: %v (unavailable: %v)", err, store.IsUnavailable(err))
	}
	forEach(t, func(t *testing.T, db *store.DB) {
		_, err := db.Collection(context.Background(), "none")
		if err == nil || store.IsUnavailable(err) {
			t.Fatalf("a missing row counted as an outage: %v", err)
		}
	})
}
