package lifecycle_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
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
			if c.p.TooManyValues(c.k) { // no rewrap uses: rotating always helps
				t.Fatal("TooManyValues without rewrap uses")
			}
		})
	}
}

// TestRotationPolicyRewrapUses: by uses, a version is due only when more
// of its uses sealed new values than the rewrap resealed; one over the
// bound whose uses are mostly the rewrap's is not due but reported by
// TooManyValues (the age rule still applies to it).
func TestRotationPolicyRewrapUses(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	p := lifecycle.RotationPolicy{After: 90 * day, AfterUses: 1000}
	young, old := now.Add(-day), now.Add(-91*day)
	key := func(id string, created time.Time, uses, rewrap uint64) coffer.DataKey {
		return coffer.DataKey{KeyID: id, Version: 2, State: coffer.KeyActive, Created: created, Uses: uses, RewrapUses: rewrap}
	}
	for _, c := range []struct {
		name    string
		p       lifecycle.RotationPolicy
		k       coffer.DataKey
		reason  string // "" when not due
		tooMany bool
	}{
		{"few values rewrapped", p, key("collection/c", young, 1001, 400), "uses", false},
		{"half the bound rewrapped", p, key("collection/c", young, 1001, 500), "uses", false},
		{"just over half rewrapped", p, key("collection/c", young, 1001, 501), "", true},
		{"many values rewrapped", p, key("collection/c", young, 1500, 1200), "", true},
		{"only rewrapped values", p, key("collection/c", young, 5000, 5000), "", true},
		{"as many new as rewrapped", p, key("collection/c", young, 2400, 1200), "", true},
		{"more new than rewrapped", p, key("collection/c", young, 2401, 1200), "uses", false},
		{"rewrapped but under the bound", p, key("collection/c", young, 1000, 1000), "", false},
		{"rewrap count past uses", p, key("collection/c", young, 1500, 2000), "", true},
		{"too many values, old", p, key("collection/c", old, 5000, 5000), "age", true},
		{"subject, too many values", p, key("subject/s", young, 5000, 5000), "", true},
		{"token value key, too many values", p, key("tokens/card_number", young, 5000, 5000), "", true},
		{"audit key: no use rule", p, key("audit/hmac", young, 5000, 5000), "", false},
		{"index key: no rule", p, key("index/c/f", old, 5000, 5000), "", false},
		{"use rule off", lifecycle.RotationPolicy{After: 90 * day}, key("collection/c", young, 5000, 5000), "", false},
		{"retired", p, coffer.DataKey{KeyID: "collection/c", State: coffer.KeyRetired, Uses: 5000, RewrapUses: 5000}, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			reason, due := c.p.Due(c.k, now)
			if due != (c.reason != "") || reason != c.reason {
				t.Fatalf("Due = %q, %v; want %q", reason, due, c.reason)
			}
			if got := c.p.TooManyValues(c.k); got != c.tooMany {
				t.Fatalf("TooManyValues = %v, want %v", got, c.tooMany)
			}
		})
	}
}

// TestAutoRotateKeyWithTooManyValues: against real stores, keyring and
// rewrap, a collection key holding more values than rotate_after_uses is
// rotated once by uses and rewrapped; the rewrap fills the new version
// past the bound, which used to make it due again at once, rotating and
// rewrapping everything at every check. Now the next runs leave it alone
// and report it (logged with the key id and counts, counted), until more
// new values than rewrapped ones are sealed under it.
func TestAutoRotateKeyWithTooManyValues(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := setup(t, b)
			f.insert(t, 20, 0, nil) // 60 seals (40 values, 20 records), 6 times the bound of 10
			var (
				logs    bytes.Buffer
				reports []string
				j       *lifecycle.Jobs
			)
			j = lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a", Batch: 7,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
				Rotation: lifecycle.RotationConfig{
					Policy: lifecycle.RotationPolicy{After: 90 * day, AfterUses: 10},
					Flush:  f.keys.FlushUses,
					Rotate: func(ctx context.Context, keyID string) (uint32, error) {
						v, err := f.keys.Rotate(ctx, keyID)
						if err == nil {
							err = j.RequestRewrap(ctx)
						}
						return v, err
					},
					OnTooManyValues: func(keyID string) { reports = append(reports, keyID) },
				}})
			autoRotate := func(want lifecycle.RotateReport) {
				t.Helper()
				rep, err := j.AutoRotate(ctx)
				if err != nil || rep != want {
					t.Fatalf("AutoRotate = %+v, %v; want %+v", rep, err, want)
				}
			}
			rewrap := func(want int) {
				t.Helper()
				rep, err := j.Rewrap(ctx, 0)
				if err != nil || !rep.Done || rep.Rewrapped != want {
					t.Fatalf("Rewrap = %+v, %v; want %d records moved", rep, err, want)
				}
			}
			counts := func(v uint32) (uint64, uint64) {
				t.Helper()
				if err := f.keys.FlushUses(ctx); err != nil {
					t.Fatal(err)
				}
				ks, err := f.db.DataKeys(ctx, "collection/c")
				if err != nil || len(ks) < int(v) {
					t.Fatalf("data keys: %+v %v", ks, err)
				}
				return ks[v-1].Uses, ks[v-1].RewrapUses
			}

			autoRotate(lifecycle.RotateReport{Rotated: 1, Rewrap: true}) // 60 seals over 10
			rewrap(20)
			if u, r := counts(2); u != 60 || r != 60 {
				t.Fatalf("version 2 after the rewrap: %d uses, %d rewrap uses; want 60 and 60", u, r)
			}
			for range 2 { // not rotated again; reported at every run
				autoRotate(lifecycle.RotateReport{TooManyValues: 1})
			}
			if v, err := f.keys.CurrentVersion(ctx, "collection/c"); err != nil || v != 2 {
				t.Fatalf("current version %d, %v; want 2", v, err)
			}
			if len(reports) != 2 || reports[0] != "collection/c" {
				t.Fatalf("reported %v", reports)
			}
			var warned int
			for l := range strings.Lines(logs.String()) {
				if !strings.Contains(l, "split the collection or raise keys.rotate_after_uses") {
					continue
				}
				warned++
				for _, want := range []string{`"level":"WARN"`, `"key_id":"collection/c"`, `"version":2`, `"uses":60`,
					`"rewrap_uses":60`, `"rotate_after_uses":10`} {
					if !strings.Contains(l, want) {
						t.Errorf("warning lacks %s: %s", want, l)
					}
				}
			}
			if warned != 2 {
				t.Fatalf("%d warnings, want one per run:\n%s", warned, logs.String())
			}
			ks, err := f.db.DataKeys(ctx, "collection/c")
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range ks {
				if len(k.Wrapped) > 0 && strings.Contains(logs.String(), base64.StdEncoding.EncodeToString(k.Wrapped)) {
					t.Fatal("the logs hold a wrapped key")
				}
			}

			// New values: once more of them than rewrapped ones were
			// sealed, a rotation helps again, once.
			f.insert(t, 20, 20, nil) // 60 new seals: as many, not more
			autoRotate(lifecycle.RotateReport{TooManyValues: 1})
			f.insert(t, 1, 40, nil) // 63 new seals
			autoRotate(lifecycle.RotateReport{Rotated: 1, Rewrap: true})
			rewrap(41)
			if u, r := counts(3); u != 123 || r != 123 {
				t.Fatalf("version 3 after the rewrap: %d uses, %d rewrap uses; want 123 and 123", u, r)
			}
			autoRotate(lifecycle.RotateReport{TooManyValues: 1})
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
			bLease, ok, err := db.AcquireLease(ctx, lifecycle.AutoRotateJob, "b", clk.Now(), time.Minute)
			if err != nil || !ok {
				t.Fatalf("lease for b: %v %v", ok, err)
			}
			if _, err := a.AutoRotate(ctx); !errors.Is(err, lifecycle.ErrBusy) {
				t.Fatalf("while b holds the lease: %v", err)
			}
			if err := db.ReleaseLease(ctx, bLease); err != nil {
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

// #16.7: root key wraps count like a data key's seals; past the use bound
// every run warns that the root key must be rotated (only an operator
// can: it needs the new key).
func TestAutoRotateWarnsOfRootKeyOverUses(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := setup(t, b)
			if err := f.keys.Check(ctx); err != nil {
				t.Fatal(err)
			}
			f.insert(t, 1, 0, nil)
			var logs bytes.Buffer
			run := func(afterUses uint64) lifecycle.RotateReport {
				t.Helper()
				j := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a", Batch: 7,
					Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
					Rotation: lifecycle.RotationConfig{
						Policy:    lifecycle.RotationPolicy{AfterUses: afterUses},
						Flush:     f.keys.FlushUses,
						Rotate:    func(context.Context, string) (uint32, error) { return 0, nil },
						RootWraps: f.keys.RootWraps,
					}})
				rep, err := j.AutoRotate(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return rep
			}
			// The check key and collection/c: two wraps.
			if rep := run(2); rep.RootOverUses {
				t.Fatalf("two wraps over a bound of 2: %+v", rep)
			}
			if rep := run(1); !rep.RootOverUses || !strings.Contains(logs.String(), "coffer keys rotate-root") ||
				!strings.Contains(logs.String(), `"root_wraps":2`) {
				t.Fatalf("two wraps over a bound of 1: %+v\n%s", rep, logs.String())
			}
		})
	}
}
