package lifecycle_test

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testclock"
)

var day = 24 * time.Hour

// TestRotationPolicyDue: the due rule at a pinned time, per kind of key.
func TestRotationPolicyDue(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	p := lifecycle.RotationPolicy{After: 90 * day, AfterUses: 1000}
	old, young := now.Add(-90*day-time.Second), now.Add(-90*day) // exactly 90 days is not over
	key := func(id string, created time.Time, uses uint64) coffer.DataKey {
		return coffer.DataKey{KeyID: id, Version: 3, State: coffer.KeyActive, Created: created, Uses: uses}
	}
	for _, c := range []struct {
		name   string
		p      lifecycle.RotationPolicy
		k      coffer.DataKey
		reason string // "" when not due
	}{
		{"collection old", p, key("collection/c", old, 0), "age"},
		{"collection exactly 90 days", p, key("collection/c", young, 0), ""},
		{"collection over uses", p, key("collection/c", young, 1001), "uses"},
		{"collection at uses", p, key("collection/c", young, 1000), ""},
		{"collection both: uses first", p, key("collection/c", old, 5000), "uses"},
		{"token value key old", p, key("tokens/card_number", old, 0), "age"},
		{"token value key used", p, key("tokens/card_number", young, 2000), "uses"},
		{"subject old: never by age", p, key("subject/42", old, 0), ""},
		{"subject used", p, key("subject/42", young, 1001), "uses"},
		{"age rule off", lifecycle.RotationPolicy{AfterUses: 1000}, key("collection/c", old.Add(-999*day), 0), ""},
		{"use rule off", lifecycle.RotationPolicy{After: 90 * day}, key("collection/c", young, 1<<40), ""},
		{"retired version", p, coffer.DataKey{KeyID: "collection/c", State: coffer.KeyRetired, Created: old}, ""},
		{"destroyed version", p, coffer.DataKey{KeyID: "subject/1", State: coffer.KeyDestroyed, Uses: 1 << 40}, ""},
		{"tokens/index", p, key("tokens/index", old, 1<<40), ""},
		{"tokens/order", p, key("tokens/order", old, 1<<40), ""},
		{"token fpe key", p, key("tokens/card_number/fpe", old, 1<<40), ""},
		{"token deterministic key", p, key("tokens/email/deterministic", old, 1<<40), ""},
		{"index key", p, key("index/customers/email", old, 1<<40), ""},
		{"audit key old", p, key("audit/hmac", old, 0), "age"},
		{"audit signing key old", p, key("audit/signing", old, 0), "age"},
		{"audit key: never by uses", p, key("audit/hmac", young, 1<<40), ""},
		{"audit-like key", p, key("audit/other", old, 1<<40), ""},
		{"root check key", p, key(keyring.RootCheckKeyID, old, 1<<40), ""},
		{"transit key", p, key("transit/payments", old, 1<<40), ""},
		{"bare prefix", p, key("collection/", old, 1<<40), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			reason, due := c.p.Due(c.k, now)
			if due != (c.reason != "") || reason != c.reason {
				t.Fatalf("Due = %q, %v; want %q", reason, due, c.reason)
			}
		})
	}
}

// TestAutoRotate: against a real store and keyring with a pinned clock,
// the job flushes this node's use counts, rotates exactly the due keys
// it may rotate (subject keys by use only, audit keys by age only, never
// index or token FPE keys), once each, on one node at a time, and goes on past a key
// that fails to rotate.
func TestAutoRotate(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storetest.Open(t, b)
			root, err := secret.Random(rand.Reader, 32)
			if err != nil {
				t.Fatal(err)
			}
			p, err := keyprovider.NewLocal("test", root, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			clk := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			kr := keyring.New(p, keyStore{db}, keyring.Options{Now: clk.Now})
			sealN := func(keyID string, n int) {
				t.Helper()
				for range n {
					if _, err := kr.Seal(ctx, keyID, []byte("v"), []byte(keyID)); err != nil {
						t.Fatal(err)
					}
				}
			}
			sealN("collection/a", 3)
			sealN("collection/b", 1)
			sealN("subject/s", 6) // over 5: due by use
			sealN("subject/t", 5) // at 5: not due
			sealN("tokens/card_number", 1)
			if _, _, err := kr.Key(ctx, "tokens/card_number/fpe"); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"tokens/index", "index/c/f", "audit/hmac"} {
				if _, _, err := kr.MAC(ctx, id, []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			if err := kr.Check(ctx); err != nil {
				t.Fatal(err)
			}

			var (
				mu      sync.Mutex
				rotated []string
				failOn  string
			)
			jobs := func(node string) *lifecycle.Jobs {
				var j *lifecycle.Jobs
				j = lifecycle.New(lifecycle.Config{Store: db, Keys: kr, Node: node, Now: clk.Now, Batch: 2,
					Rotation: lifecycle.RotationConfig{
						Policy: lifecycle.RotationPolicy{After: 90 * day, AfterUses: 5},
						Flush:  kr.FlushUses,
						Rotate: func(ctx context.Context, keyID string) (uint32, error) {
							if keyID == failOn {
								return 0, errors.New("refused")
							}
							v, err := kr.Rotate(ctx, keyID)
							if err == nil && (strings.HasPrefix(keyID, "collection/") || strings.HasPrefix(keyID, "subject/")) {
								err = j.RequestRewrap(ctx)
							}
							return v, err
						},
						OnRotated: func(keyID string, from, to uint32) {
							mu.Lock()
							defer mu.Unlock()
							if to != from+1 {
								t.Errorf("%s rotated from %d to %d", keyID, from, to)
							}
							rotated = append(rotated, keyID)
						},
					}})
				return j
			}
			run := func(j *lifecycle.Jobs, want ...string) lifecycle.RotateReport {
				t.Helper()
				mu.Lock()
				rotated = nil
				mu.Unlock()
				rep, err := j.AutoRotate(ctx)
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				slices.Sort(rotated)
				if !slices.Equal(rotated, want) || rep.Rotated != len(want) {
					t.Fatalf("rotated %v (report %+v), want %v", rotated, rep, want)
				}
				return rep
			}
			current := func(keyID string) uint32 {
				t.Helper()
				v, err := kr.CurrentVersion(ctx, keyID)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}

			a := jobs("a")
			clk.Advance(time.Hour)
			// The counts were never flushed: the job flushes them first.
			if rep := run(a, "subject/s"); !rep.Rewrap {
				t.Fatalf("a subject key rotated without a rewrap: %+v", rep)
			}
			if st, err := db.JobState(ctx, lifecycle.RewrapJob); err != nil || !strings.Contains(st, `"done":false`) {
				t.Fatalf("rewrap not requested: %q %v", st, err)
			}
			run(a)                   // its new version has sealed nothing: not due again
			sealN("collection/a", 3) // 6 in all: due by use
			run(a, "collection/a")

			// Another node holding the job's lease: this one waits its turn.
			if ok, err := db.AcquireLease(ctx, lifecycle.AutoRotateJob, "b", clk.Now(), time.Minute); err != nil || !ok {
				t.Fatalf("lease for b: %v %v", ok, err)
			}
			if _, err := a.AutoRotate(ctx); !errors.Is(err, lifecycle.ErrBusy) {
				t.Fatalf("while b holds the lease: %v", err)
			}
			if err := db.ReleaseLease(ctx, lifecycle.AutoRotateJob, "b"); err != nil {
				t.Fatal(err)
			}

			// 91 days on, the age rule: collection, token value and audit
			// keys (paged two at a time), not subject keys nor the rest.
			clk.Advance(91 * day)
			failOn = "collection/b"
			mu.Lock()
			rotated = nil
			mu.Unlock()
			rep, err := a.AutoRotate(ctx)
			if err == nil || !strings.Contains(err.Error(), "1 keys") {
				t.Fatalf("a failed rotation was not reported: %v", err)
			}
			mu.Lock()
			got := slices.Sorted(slices.Values(rotated))
			mu.Unlock()
			if want := []string{"audit/hmac", "collection/a", "tokens/card_number"}; !slices.Equal(got, want) || rep.Rotated != 3 {
				t.Fatalf("age run rotated %v (%+v), want %v", got, rep, want)
			}
			failOn = ""
			run(a, "collection/b") // the failed one is retried next time
			for id, want := range map[string]uint32{
				"collection/a": 3, "collection/b": 2, "subject/s": 2, "subject/t": 1, "tokens/card_number": 2,
				"tokens/card_number/fpe": 1, "tokens/index": 1, "index/c/f": 1, "audit/hmac": 2,
			} {
				if v := current(id); v != want {
					t.Errorf("%s at version %d, want %d", id, v, want)
				}
			}
			run(a) // nothing left due

			// Rules off: nothing rotates, however old or used.
			clk.Advance(1000 * day)
			off := lifecycle.New(lifecycle.Config{Store: db, Keys: kr, Node: "a", Now: clk.Now,
				Rotation: lifecycle.RotationConfig{Rotate: func(context.Context, string) (uint32, error) {
					t.Error("rotated with both rules off")
					return 0, nil
				}}})
			if rep, err := off.AutoRotate(ctx); err != nil || rep.Rotated != 0 {
				t.Fatalf("rules off: %+v %v", rep, err)
			}
		})
	}
}
