package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// forEach runs fn against a fresh store of every backend.
func forEach(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, storetest.Open(t, b))
		})
	}
}

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func mustCollection(t *testing.T, db *store.DB, name string) {
	t.Helper()
	err := db.CreateCollection(context.Background(), coffer.Collection{
		Name:      name,
		Fields:    []coffer.Field{{Name: "email", Type: coffer.TypeEmail, Searchable: true}},
		Retention: 48 * time.Hour,
		CreatedAt: t0,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCollections(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCollection(t, db, "customers")
		err := db.CreateCollection(ctx, coffer.Collection{Name: "customers", CreatedAt: t0})
		if coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("duplicate collection: got %v, want conflict", err)
		}
		c, err := db.Collection(ctx, "customers")
		if err != nil {
			t.Fatal(err)
		}
		if c.Retention != 48*time.Hour || !c.CreatedAt.Equal(t0) || len(c.Fields) != 1 || !c.Fields[0].Searchable {
			t.Fatalf("collection round trip: %+v", c)
		}
		if _, err := db.Collection(ctx, "nope"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("unknown collection: %v", err)
		}
		all, err := db.Collections(ctx)
		if err != nil || len(all) != 1 {
			t.Fatalf("collections: %v %v", all, err)
		}
	})
}

func TestRecords(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCollection(t, db, "customers")
		exp := t0.Add(time.Hour)
		r := coffer.SealedRecord{
			ID: "r1", Collection: "customers", Owner: "alice", Subject: "s1", KeyID: "subject/s1",
			CreatedAt: t0, UpdatedAt: t0, ExpiresAt: &exp,
			Values:   map[string][]byte{"email": {1, 2, 3, 0, 255}},
			Revision: 1, Seal: []byte{4, 5, 6},
		}
		mac := []byte{9, 9, 9}
		if err := db.InsertRecord(ctx, r, []coffer.IndexEntry{{Field: "email", Version: 1, MAC: mac}}); err != nil {
			t.Fatal(err)
		}
		if err := db.InsertRecord(ctx, r, nil); coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("duplicate record: %v", err)
		}
		got, err := db.Record(ctx, "customers", "r1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Owner != "alice" || got.Subject != "s1" || got.KeyID != "subject/s1" ||
			!bytes.Equal(got.Values["email"], r.Values["email"]) || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) ||
			got.Revision != 1 || !bytes.Equal(got.Seal, r.Seal) {
			t.Fatalf("record round trip: %+v", got)
		}
		ids, err := db.SearchIndex(ctx, "customers", "email", [][]byte{{1}, mac}, 10)
		if err != nil || len(ids) != 1 || ids[0] != "r1" {
			t.Fatalf("search: %v %v", ids, err)
		}
		// Update replaces the index entry of the field, from the revision
		// it was made from only.
		got.Values["email"] = []byte{7}
		got.UpdatedAt = t0.Add(time.Minute)
		got.Revision, got.Seal = 2, []byte{7, 7}
		if err := db.UpdateRecord(ctx, got, []string{"email"}, []coffer.IndexEntry{{Field: "email", Version: 1, MAC: []byte{8}}}); err != nil {
			t.Fatal(err)
		}
		if err := db.UpdateRecord(ctx, got, nil, nil); coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("an update made from a revision since replaced: %v, want a conflict", err)
		}
		if again, err := db.Record(ctx, "customers", "r1"); err != nil || again.Revision != 2 || !bytes.Equal(again.Seal, []byte{7, 7}) {
			t.Fatalf("after the update: %+v %v", again, err)
		}
		gone := got
		gone.ID, gone.Revision = "nope", 3
		if err := db.UpdateRecord(ctx, gone, nil, nil); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("update of a missing record: %v", err)
		}
		if has, err := db.IndexHas(ctx, "customers", "email", "r1", [][]byte{{1}, {8}}); err != nil || !has {
			t.Fatalf("IndexHas of r1's entry: %v %v", has, err)
		}
		if has, err := db.IndexHas(ctx, "customers", "email", "r2", [][]byte{{8}}); err != nil || has {
			t.Fatalf("IndexHas of another record: %v %v", has, err)
		}
		if ids, _ := db.SearchIndex(ctx, "customers", "email", [][]byte{mac}, 10); len(ids) != 0 {
			t.Fatalf("stale index entry after update: %v", ids)
		}
		if ids, _ := db.SearchIndex(ctx, "customers", "email", [][]byte{{8}}, 10); len(ids) != 1 {
			t.Fatalf("new index entry missing: %v", ids)
		}
		subj, err := db.SubjectRecords(ctx, "s1")
		if err != nil || len(subj) != 1 {
			t.Fatalf("subject records: %v %v", subj, err)
		}
		n, err := db.DeleteSubjectRecords(ctx, "s1")
		if err != nil || n != 1 {
			t.Fatalf("delete subject: %d %v", n, err)
		}
		if _, err := db.Record(ctx, "customers", "r1"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("record after subject erasure: %v", err)
		}
		if ids, _ := db.SearchIndex(ctx, "customers", "email", [][]byte{{8}}, 10); len(ids) != 0 {
			t.Fatalf("index after subject erasure: %v", ids)
		}
		if err := db.DeleteRecord(ctx, "customers", "r1"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("delete missing: %v", err)
		}
		// Foreign key: no record in an unknown collection.
		bad := r
		bad.Collection = "ghost"
		if err := db.InsertRecord(ctx, bad, nil); err == nil {
			t.Fatal("record stored in an unknown collection")
		}
	})
}

func TestInsertRecordIsAtomic(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCollection(t, db, "customers")
		r := coffer.SealedRecord{ID: "r1", Collection: "customers", KeyID: "k", CreatedAt: t0, UpdatedAt: t0,
			Values: map[string][]byte{"email": {1}}}
		// Two identical index entries conflict-ignore; force a failure with
		// a record id clash inside one transaction instead: insert r, then
		// insert r2 whose index write is fine but whose row clashes.
		if err := db.InsertRecord(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
		err := db.InsertRecord(ctx, r, []coffer.IndexEntry{{Field: "email", Version: 1, MAC: []byte{5}}})
		if err == nil {
			t.Fatal("duplicate insert succeeded")
		}
		if ids, _ := db.SearchIndex(ctx, "customers", "email", [][]byte{{5}}, 10); len(ids) != 0 {
			t.Fatalf("failed insert left index entries: %v", ids)
		}
	})
}

func TestDataKeys(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		k := coffer.DataKey{KeyID: "collection/c", Version: 1, Wrapped: []byte{1, 2}, State: coffer.KeyActive, Created: t0}
		if err := db.InsertDataKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := db.InsertDataKey(ctx, k); !errors.Is(err, store.ErrVersionExists) {
			t.Fatalf("duplicate version: %v", err)
		}
		k.Version = 2
		if err := db.InsertDataKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := db.SetDataKeyState(ctx, "collection/c", 1, coffer.KeyRetired); err != nil {
			t.Fatal(err)
		}
		ks, err := db.DataKeys(ctx, "collection/c")
		if err != nil || len(ks) != 2 || ks[0].State != coffer.KeyRetired || ks[1].Version != 2 {
			t.Fatalf("data keys: %+v %v", ks, err)
		}
		if err := db.DestroyDataKeys(ctx, "collection/c"); err != nil {
			t.Fatal(err)
		}
		ks, _ = db.DataKeys(ctx, "collection/c")
		for _, k := range ks {
			if k.State != coffer.KeyDestroyed || len(k.Wrapped) != 0 {
				t.Fatalf("not destroyed: %+v", k)
			}
		}
	})
}

func TestConcurrentDataKeyCreation(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := db.InsertDataKey(ctx, coffer.DataKey{KeyID: "race", Version: 1, Wrapped: []byte{1}, State: coffer.KeyActive, Created: t0})
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, store.ErrVersionExists) {
					t.Errorf("unexpected error: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d creators won, want exactly 1", wins)
		}
	})
}

func TestClientsUsersAndAuthState(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := coffer.Client{ID: "cl_1", Name: "svc", SecretHash: "sha256$ab", Roles: []string{"admin"},
			Attributes: map[string]string{"team": "a"}, CreatedAt: t0}
		if err := db.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		got, err := db.Client(ctx, "cl_1")
		if err != nil || got.Name != "svc" || got.Roles[0] != "admin" || got.Attributes["team"] != "a" {
			t.Fatalf("client: %+v %v", got, err)
		}
		if err := db.UpdateClientSecret(ctx, "cl_1", "sha256$cd"); err != nil {
			t.Fatal(err)
		}
		u := coffer.User{ID: "u1", Username: "ada", PasswordHash: "$argon2id$x", Roles: []string{"support"}, CreatedAt: t0}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		u.ID = "u2"
		if err := db.CreateUser(ctx, u); coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("duplicate username: %v", err)
		}
		ok, err := db.UseTOTPStep(ctx, "u1", 100)
		if err != nil || !ok {
			t.Fatalf("first step: %v %v", ok, err)
		}
		if ok, _ := db.UseTOTPStep(ctx, "u1", 100); ok {
			t.Fatal("TOTP step replay accepted")
		}
		u1, _ := db.UserByName(ctx, "", "ada")
		u1.RecoveryHashes = []string{"h1", "h2"}
		u1.TOTPConfirmed = true
		if err := db.UpdateUserMFA(ctx, u1); err != nil {
			t.Fatal(err)
		}
		if ok, _ := db.UseRecoveryHash(ctx, "u1", "h1"); !ok {
			t.Fatal("recovery code refused")
		}
		if ok, _ := db.UseRecoveryHash(ctx, "u1", "h1"); ok {
			t.Fatal("recovery code reused")
		}
		if err := db.RevokeToken(ctx, "j1", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if r, _ := db.IsRevoked(ctx, "j1"); !r {
			t.Fatal("revocation lost")
		}
		if r, _ := db.IsRevoked(ctx, "j2"); r {
			t.Fatal("unrevoked token reported revoked")
		}
		lock := func(n int) time.Duration { return time.Duration(n) * time.Second }
		for i := 1; i <= 3; i++ {
			n, until, err := db.AuthFailure(ctx, "ip:1.2.3.4", t0, time.Hour, lock)
			if err != nil || n != i || !until.Equal(t0.Add(time.Duration(i)*time.Second)) {
				t.Fatalf("failure %d: %d %v %v", i, n, until, err)
			}
		}
		if err := db.ClearAuthFailures(ctx, "ip:1.2.3.4"); err != nil {
			t.Fatal(err)
		}
		if until, _ := db.AuthLockedUntil(ctx, "ip:1.2.3.4"); !until.IsZero() {
			t.Fatal("lockout survived clear")
		}
		v, err := db.SavePolicy(ctx, "yaml", []byte("roles: {}"), t0)
		if err != nil || v != 1 {
			t.Fatalf("policy: %d %v", v, err)
		}
		v, _ = db.SavePolicy(ctx, "json", []byte(`{"roles":{}}`), t0)
		_, f, src, err := db.Policy(ctx)
		if err != nil || v != 2 || f != "json" || string(src) != `{"roles":{}}` {
			t.Fatalf("policy round trip: %d %s %s %v", v, f, src, err)
		}
	})
}

func TestSQLiteFileMode(t *testing.T) {
	b := storetest.Backends()[0]
	dsn := b.DSN(t)
	db, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fi, err := os.Stat(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestConcurrentWritesCommitIndependently: many concurrent record writes
// (group-committed on SQLite) where some fail: each failure stores nothing,
// every success is stored with its index entries.
func TestConcurrentWritesCommitIndependently(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCollection(t, db, "customers")
		var wg sync.WaitGroup
		errs := make([]error, 64)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("r%02d", i)
				if i%4 == 3 {
					id = "dup" // all but one of these collide
				}
				r := coffer.SealedRecord{ID: id, Collection: "customers", KeyID: "k", CreatedAt: t0, UpdatedAt: t0,
					Values: map[string][]byte{"email": {byte(i)}}}
				errs[i] = db.InsertRecord(ctx, r, []coffer.IndexEntry{{Field: "email", Version: 1, MAC: []byte{byte(i)}}})
			}()
		}
		wg.Wait()
		ok, conflicts := 0, 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
				if ids, _ := db.SearchIndex(ctx, "customers", "email", [][]byte{{byte(i)}}, 2); len(ids) != 1 {
					t.Errorf("record %d stored without its index entry: %v", i, ids)
				}
			case coffer.ErrorCode(err) == coffer.ECONFLICT:
				conflicts++
				if ids, _ := db.SearchIndex(ctx, "customers", "email", [][]byte{{byte(i)}}, 2); len(ids) != 0 {
					t.Errorf("failed write %d left an index entry: %v", i, ids)
				}
			default:
				t.Errorf("write %d: %v", i, err)
			}
		}
		if ok != 49 || conflicts != 15 {
			t.Fatalf("%d stored, %d conflicts; want 49 and 15", ok, conflicts)
		}
	})
}

// BenchmarkRecordWriteRead: a sealed record (4 fields of ~60-byte
// envelopes, one index entry) written and read back through the store.
func BenchmarkRecordWriteRead(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db := storetest.Open(b, be)
			ctx := context.Background()
			if err := db.CreateCollection(ctx, coffer.Collection{Name: "customers", CreatedAt: t0,
				Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail, Searchable: true}}}); err != nil {
				b.Fatal(err)
			}
			env := make([]byte, 60)
			vals := map[string][]byte{"name": env, "email": env, "card_number": env, "ssn": env}
			var i atomic.Int64
			b.Run("write", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						n := i.Add(1)
						r := coffer.SealedRecord{ID: fmt.Sprintf("r%012d", n), Collection: "customers", KeyID: "k",
							CreatedAt: t0, UpdatedAt: t0, Values: vals}
						if err := db.InsertRecord(ctx, r, []coffer.IndexEntry{{Field: "email", Version: 1, MAC: []byte(r.ID)}}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("read", func(b *testing.B) {
				max := i.Load()
				var j atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						n := j.Add(1)%max + 1
						if _, err := db.Record(ctx, "customers", fmt.Sprintf("r%012d", n)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

func TestDetectCounters(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w1, w2 := t0, t0.Add(time.Minute)
		if n, err := db.AddCount(ctx, "bulk|principal:c1", w1, 100); err != nil || n != 100 {
			t.Fatalf("AddCount = %d, %v; want 100", n, err)
		}
		got, err := db.AddCounts(ctx, []detect.CountAdd{
			{Key: "deny|principal:c1", Window: w1, N: 3},
			{Key: "bulk|principal:c1", Window: w1, N: 50},
			{Key: "bulk|principal:c1", Window: w2, N: 7},
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{3, 150, 7}; !slices.Equal(got, want) {
			t.Fatalf("AddCounts = %v, want %v (totals in the order given)", got, want)
		}

		// Concurrent increments of one counter each see a distinct total.
		var (
			mu   sync.Mutex
			seen = map[int]bool{}
			wg   sync.WaitGroup
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					tot, err := db.AddCounts(ctx, []detect.CountAdd{{Key: "enum|ip:10.0.0.1", Window: w1, N: 1}})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[tot[0]] {
						t.Errorf("total %d seen twice", tot[0])
					}
					seen[tot[0]] = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) != 200 || !seen[200] {
			t.Errorf("saw %d distinct totals (max 200 expected)", len(seen))
		}
	})
}

// A sliding window is summed from slices: each increment's total holds the
// key's slices from Since up to its own, and nothing of other keys or of
// slices before Since. Concurrent increments of one slice, summed with the
// slices before it, still each see a distinct total.
func TestDetectCountersSliding(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := 5 * time.Second
		w := func(i int) time.Time { return t0.Add(time.Duration(i) * s) }
		if _, err := db.AddCounts(ctx, []detect.CountAdd{
			{Key: "bulk|principal:c1", Window: w(0), N: 100},
			{Key: "bulk|principal:c1", Window: w(3), N: 20},
			{Key: "bulk|principal:c2", Window: w(3), N: 7},
		}); err != nil {
			t.Fatal(err)
		}
		got, err := db.AddCounts(ctx, []detect.CountAdd{
			{Key: "bulk|principal:c1", Window: w(12), N: 1, Since: w(0)},
			{Key: "bulk|principal:c1", Window: w(13), N: 2, Since: w(1)},
			{Key: "bulk|principal:c2", Window: w(4), N: 1, Since: w(0)},
			{Key: "bulk|principal:c3", Window: w(4), N: 9, Since: w(0)},
		})
		if err != nil {
			t.Fatal(err)
		}
		// c1 at w12 from w0: 100+20+1; at w13 from w1: 20+1+2 (w0 left the
		// window); c2: 7+1; c3: its own only.
		if want := []int{121, 23, 8, 9}; !slices.Equal(got, want) {
			t.Fatalf("sliding totals = %v, want %v", got, want)
		}

		var (
			mu   sync.Mutex
			seen = map[int]bool{}
			wg   sync.WaitGroup
		)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					tot, err := db.AddCounts(ctx, []detect.CountAdd{{Key: "bulk|principal:c1", Window: w(14), N: 1, Since: w(2)}})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[tot[0]] {
						t.Errorf("sliding total %d seen twice", tot[0])
					}
					seen[tot[0]] = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		// From w2: 20 (w3) + 1 (w12) + 2 (w13) + 100 concurrent ones.
		if len(seen) != 100 || !seen[123] {
			t.Errorf("saw %d distinct sliding totals, want 100 ending at 123", len(seen))
		}
	})
}

// The reindex job's store side: stale entries listed in record id order
// after a cursor, and a move that happens only if the entry is still the
// one listed (a concurrent update wins).
func TestReindexEntries(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCollection(t, db, "customers")
		for i, v := range []uint32{1, 2, 1} {
			id := fmt.Sprintf("r%d", i)
			r := coffer.SealedRecord{ID: id, Collection: "customers", KeyID: "collection/customers", CreatedAt: t0, UpdatedAt: t0,
				Values: map[string][]byte{"email": {byte(i)}}}
			if err := db.InsertRecord(ctx, r, []coffer.IndexEntry{{Field: "email", Version: v, MAC: []byte{byte(i), 1}}}); err != nil {
				t.Fatal(err)
			}
		}
		stale, err := db.StaleIndexEntries(ctx, "customers", "email", 2, "", 10)
		if err != nil || len(stale) != 2 || stale[0].RecordID != "r0" || stale[1].RecordID != "r2" || stale[0].Version != 1 {
			t.Fatalf("stale entries = %+v, %v; want r0 and r2 under version 1", stale, err)
		}
		if after, err := db.StaleIndexEntries(ctx, "customers", "email", 2, "r0", 10); err != nil || len(after) != 1 || after[0].RecordID != "r2" {
			t.Fatalf("stale entries after r0 = %+v, %v", after, err)
		}
		next := coffer.IndexEntry{Field: "email", Version: 2, MAC: []byte{0, 2}}
		if ok, err := db.MoveIndexEntry(ctx, "customers", "r0", stale[0].IndexEntry, next); err != nil || !ok {
			t.Fatalf("move = %v, %v", ok, err)
		}
		// The same move again finds the old entry gone: nothing changes.
		if ok, err := db.MoveIndexEntry(ctx, "customers", "r0", stale[0].IndexEntry, coffer.IndexEntry{Field: "email", Version: 2, MAC: []byte{7}}); err != nil || ok {
			t.Fatalf("second move = %v, %v; want false", ok, err)
		}
		if ids, err := db.SearchIndex(ctx, "customers", "email", [][]byte{{0, 2}}, 10); err != nil || len(ids) != 1 || ids[0] != "r0" {
			t.Fatalf("search under the moved MAC: %v %v", ids, err)
		}
		if ids, err := db.SearchIndex(ctx, "customers", "email", [][]byte{{0, 1}, {7}}, 10); err != nil || len(ids) != 0 {
			t.Fatalf("search under the old MAC: %v %v", ids, err)
		}
		if left, err := db.StaleIndexEntries(ctx, "customers", "email", 2, "", 10); err != nil || len(left) != 1 || left[0].RecordID != "r2" {
			t.Fatalf("stale after the move = %+v, %v", left, err)
		}
	})
}

// TestConcurrentPolicySavesEachGetAVersion: policy saves racing on one
// database each make a version of their own, and the last version holds
// the document saved last: nodes reload the policy when its version
// rises, so two saves under one version would leave them on different
// policies.
func TestConcurrentPolicySavesEachGetAVersion(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const n = 16
		var (
			mu   sync.Mutex
			seen = map[int64]string{}
			wg   sync.WaitGroup
		)
		for i := range n {
			wg.Go(func() {
				doc := fmt.Sprintf("roles: {r%d: []}", i)
				v, err := db.SavePolicy(ctx, "yaml", []byte(doc), t0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if other, dup := seen[v]; dup {
					t.Errorf("%q and %q were both saved as version %d", other, doc, v)
				}
				seen[v] = doc
			})
		}
		wg.Wait()
		v, _, src, err := db.Policy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v != n || string(src) != seen[n] {
			t.Fatalf("stored version %d holds %q; want version %d holding %q", v, src, n, seen[n])
		}
	})
}
