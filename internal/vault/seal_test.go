package vault_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/policy"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/vault"
)

type defaultPolicy struct{}

func (defaultPolicy) Current() *policy.Policy { return policy.Default() }

// forEachBackend runs fn in parallel on a fresh SQLite and PostgreSQL store.
func forEachBackend(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, storetest.Open(t, b))
		})
	}
}

// testKeyring is a keyring over db under a fresh root key.
func testKeyring(t *testing.T, db *store.DB) *keyring.Keyring {
	t.Helper()
	root, err := secret.Random(rand.Reader, keyprovider.RootKeySize)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keyprovider.NewLocal("test", root, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keyring.New(p, db, keyring.Options{})
}

// testVault is a vault over a real store and keyring, with the bootstrap
// policy, and a collection "people" (email searchable, name).
func testVault(t *testing.T, db *store.DB) (*vault.Vault, *keyring.Keyring, vault.Caller) {
	t.Helper()
	kr := testKeyring(t, db)
	v := vault.New(vault.Config{Store: db, Keys: kr, Policies: defaultPolicy{}, Rand: rand.Reader})
	if err := db.CreateCollection(context.Background(), coffer.Collection{Name: "people", CreatedAt: time.Now().UTC(),
		Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail, Searchable: true}, {Name: "name", Type: coffer.TypeString}}}); err != nil {
		t.Fatal(err)
	}
	admin := vault.Caller{Principal: &coffer.Principal{ID: "admin", Kind: coffer.KindClient, Roles: []string{"admin"}}, Note: &coffer.AccessNote{}}
	return v, kr, admin
}

func raw(s string) json.RawMessage { b, _ := json.Marshal(s); return b }

// TestRecordFormats: a record written before records carried a revision
// (format 1) reads as before; its next write moves it to format 2; a
// format 2 record passed off as format 1 (its revision and seal dropped)
// is detected; updates that race are made again, and none is lost.
func TestRecordFormats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		v, kr, admin := testVault(t, db)
		now := time.Now().UTC()
		old := coffer.SealedRecord{ID: "legacy", Collection: "people", Owner: "o", KeyID: "collection/people",
			CreatedAt: now, UpdatedAt: now, Values: map[string][]byte{}}
		for f, val := range map[string]string{"email": "ada@example.com", "name": "Ada"} {
			env, err := kr.Seal(ctx, old.KeyID, []byte(val), envelope.AAD("people", "legacy", f))
			if err != nil {
				t.Fatal(err)
			}
			old.Values[f] = env
		}
		if err := db.InsertRecord(ctx, old, nil); err != nil {
			t.Fatal(err)
		}
		got, err := v.GetRecord(ctx, admin, "people", "legacy")
		if err != nil || got.Data["name"] != "Ada" || got.Data["email"] != "ada@example.com" {
			t.Fatalf("a format 1 record: %+v %v", got, err)
		}
		if err := v.UpdateRecord(ctx, admin, "people", "legacy", vault.Patch{Data: map[string]json.RawMessage{"name": raw("Ada L.")}}); err != nil {
			t.Fatal(err)
		}
		up, err := db.Record(ctx, "people", "legacy")
		if err != nil || up.Revision != 1 || len(up.Seal) == 0 {
			t.Fatalf("after its first write: revision %d, seal of %d bytes, %v", up.Revision, len(up.Seal), err)
		}
		if got, err := v.GetRecord(ctx, admin, "people", "legacy"); err != nil || got.Data["name"] != "Ada L." || got.Data["email"] != "ada@example.com" {
			t.Fatalf("after its first write: %+v %v", got, err)
		}

		// Dropping the revision and the seal does not make it pass
		// for a record of format 1.
		down := up
		down.Revision, down.Seal = 0, nil
		lease, _, err := db.AcquireLease(ctx, "rewrap", "test", time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := db.ReplaceValues(ctx, lease, time.Now(), []coffer.SealedRecord{down}, []map[string][]byte{up.Values}); err != nil || n != 1 {
			t.Fatalf("downgrade: %d %v", n, err)
		}
		note := &coffer.AccessNote{}
		_, err = v.GetRecord(ctx, vault.Caller{Principal: admin.Principal, Note: note}, "people", "legacy")
		if coffer.ErrorCode(err) != coffer.ECONFLICT || len(note.Tampered) != 1 {
			t.Fatalf("a downgraded record: %v, tampered %v", err, note.Tampered)
		}

		// Racing updates: each is made from the revision it read, and
		// retried when another went first.
		id, err := v.CreateRecord(ctx, admin, "people", vault.NewRecord{Data: map[string]json.RawMessage{"name": raw("n0")}})
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 8)
		for i := range 8 {
			go func() {
				errs <- v.UpdateRecord(ctx, vault.Caller{Principal: admin.Principal, Note: &coffer.AccessNote{}}, "people", id,
					vault.Patch{Data: map[string]json.RawMessage{"name": raw("n" + string(rune('1'+i)))}})
			}()
		}
		ok := 0
		for range 8 {
			err := <-errs
			if err == nil {
				ok++
			} else if coffer.ErrorCode(err) != coffer.ECONFLICT {
				t.Errorf("a racing update: %v, want success or a conflict after its retries", err)
			}
		}
		r, err := db.Record(ctx, "people", id)
		if err != nil || r.Revision != uint64(1+ok) {
			t.Fatalf("after %d updates that succeeded: revision %d, %v", ok, r.Revision, err)
		}
		if _, err := v.GetRecord(ctx, admin, "people", id); err != nil {
			t.Fatalf("read after racing updates: %v", err)
		}
	})
}

// TestIndexFormsBeforeNormalisation: a blind index entry filed before text
// was normalised (an email lowercased by simple mapping) is still found
// by a search typed as it was stored; once the index key is rotated and
// the reindex has run, the entry is in today's form (Unicode case
// folding), found by any equivalent spelling.
func TestIndexFormsBeforeNormalisation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		v, kr, admin := testVault(t, db)
		now := time.Now().UTC()
		const stored = "Stra\u00dfe@example.de"
		r := coffer.SealedRecord{ID: "old", Collection: "people", KeyID: "collection/people", CreatedAt: now, UpdatedAt: now, Revision: 1}
		if err := vault.SealRecord(ctx, kr, &r, map[string][]byte{"email": []byte(stored)}); err != nil {
			t.Fatal(err)
		}
		ver, mac, err := kr.MAC(ctx, "index/people/email", []byte("stra\u00dfe@example.de")) // strings.ToLower, as then
		if err != nil {
			t.Fatal(err)
		}
		if err := db.InsertRecord(ctx, r, []coffer.IndexEntry{{Field: "email", Version: ver, MAC: mac}}); err != nil {
			t.Fatal(err)
		}
		search := func(email string) int {
			t.Helper()
			hits, err := v.SearchRecords(ctx, admin, "people", vault.Search{Where: map[string]json.RawMessage{"email": raw(email)}})
			if err != nil {
				t.Fatal(err)
			}
			return len(hits)
		}
		if n := search(stored); n != 1 {
			t.Fatalf("search as stored before the reindex: %d hits", n)
		}
		if n := search("STRASSE@example.de"); n != 0 {
			t.Fatalf("an equivalent spelling before the reindex: %d hits", n)
		}
		if _, err := kr.Rotate(ctx, "index/people/email"); err != nil {
			t.Fatal(err)
		}
		if rep, err := v.Reindex(ctx, 10); err != nil || rep.Moved != 1 {
			t.Fatalf("reindex: %+v %v", rep, err)
		}
		for _, email := range []string{stored, "STRASSE@example.de", "strasse@EXAMPLE.de"} {
			if n := search(email); n != 1 {
				t.Fatalf("search %+q after the reindex: %d hits", email, n)
			}
		}
	})
}
