package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
)

// TestReserveAuthAttemptConcurrent: attempts reserved at once on one key
// are each counted, so no more than the budget pass (the lock check and
// the count are one step).
func TestReserveAuthAttemptConcurrent(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		lock := func(n int) time.Duration {
			if n >= 5 {
				return time.Hour
			}
			return 0
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		admitted := 0
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, until, err := db.ReserveAuthAttempt(ctx, "client:x", t0, time.Hour, lock)
				if err != nil {
					t.Error(err)
					return
				}
				if !until.After(t0) {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if admitted != 5 {
			t.Fatalf("%d of 40 concurrent attempts admitted; the budget is 5", admitted)
		}
		if n, err := db.AuthFailures(ctx, "client:x", t0, time.Hour); err != nil || n != 5 {
			t.Fatalf("failures counted: %d %v", n, err)
		}
		// Concurrent failures of one address are all counted too.
		for range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := db.AuthFailure(ctx, "ip:1.2.3.4", t0, time.Hour, lock); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if n, _ := db.AuthFailures(ctx, "ip:1.2.3.4", t0, time.Hour); n != 30 {
			t.Fatalf("%d of 30 concurrent failures counted", n)
		}
		// Old failures are forgiven once no lock runs.
		if n, _ := db.AuthFailures(ctx, "ip:1.2.3.4", t0.Add(3*time.Hour), time.Hour); n != 0 {
			t.Fatalf("failures outside the window: %d", n)
		}
	})
}

// TestUseRecoveryHashConcurrent: one recovery code raced by many requests
// is used once; other codes of the same user are used meanwhile.
func TestUseRecoveryHashConcurrent(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		u := coffer.User{ID: "u1", Username: "ada", UsernameKey: "ada", PasswordHash: "$argon2id$x", Roles: []string{},
			RecoveryHashes: []string{"h0", "h1", "h2", "h3"}, CreatedAt: t0}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		used := map[string]int{}
		for i := range 24 {
			h := "h0"
			if i%8 == 7 {
				h = []string{"h1", "h2", "h3"}[i/8]
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := db.UseRecoveryHash(ctx, "u1", h)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					used[h]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if used["h0"] != 1 || used["h1"] != 1 || used["h2"] != 1 || used["h3"] != 1 {
			t.Fatalf("uses per code: %v (each must be used exactly once)", used)
		}
		got, err := db.UserByName(ctx, "ada", "")
		if err != nil || len(got.RecoveryHashes) != 0 {
			t.Fatalf("left: %v %v", got.RecoveryHashes, err)
		}
	})
}

// TestUsernameKeys: users are found by key; users made before keys are
// found by exact name until a key is filled, and a key two old users
// share goes to the older one.
func TestUsernameKeys(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk := func(id, name, key string, at time.Time) {
			t.Helper()
			u := coffer.User{ID: id, Username: name, UsernameKey: key, PasswordHash: "$argon2id$x", Roles: []string{}, CreatedAt: at}
			if err := db.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		mk("u1", "Alice", "", t0)
		mk("u2", "alice", "", t0.Add(time.Second))
		mk("u3", "bob", "bob", t0)
		if err := db.CreateUser(ctx, coffer.User{ID: "u4", Username: "Bob", UsernameKey: "bob", PasswordHash: "x",
			Roles: []string{}, CreatedAt: t0}); coffer.ErrorCode(err) != coffer.ECONFLICT {
			t.Fatalf("a second user with key bob: %v", err)
		}
		if u, err := db.UserByName(ctx, "alice", "alice"); err != nil || u.ID != "u2" {
			t.Fatalf("old user by exact name: %+v %v", u, err)
		}
		n, err := db.FillUsernameKeys(ctx, func(name string) string {
			if name == "Alice" || name == "alice" {
				return "alice"
			}
			return ""
		})
		if err != nil || n != 1 {
			t.Fatalf("filled %d, %v", n, err)
		}
		if u, err := db.UserByName(ctx, "alice", "ALICE"); err != nil || u.ID != "u1" {
			t.Fatalf("by key after fill: %+v %v (want the older u1)", u, err)
		}
		if u, err := db.UserByName(ctx, "alice", "alice"); err != nil || u.ID != "u2" {
			t.Fatalf("an old user whose key the older look-alike took, by exact name: %+v %v", u, err)
		}
		if _, err := db.UserByName(ctx, "", "nobody"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
			t.Fatalf("unknown: %v", err)
		}
	})
}
