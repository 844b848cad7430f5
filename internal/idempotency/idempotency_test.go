package idempotency_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/idempotency"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// sqlKeys maps the store's duplicate-version error to the keyring's, as
// the app does.
type sqlKeys struct{ *store.DB }

func (k sqlKeys) InsertDataKey(ctx context.Context, dk coffer.DataKey) error {
	err := k.DB.InsertDataKey(ctx, dk)
	if errors.Is(err, store.ErrVersionExists) {
		return fmt.Errorf("%w: %w", keyring.ErrVersionExists, err)
	}
	return err
}

// keeper returns a Keeper over a real store and keyring of backend b.
func keeper(t *testing.T, b storetest.Backend) (*idempotency.Keeper, *store.DB) {
	t.Helper()
	db := storetest.Open(t, b)
	root, err := secret.Random(rand.Reader, keyprovider.RootKeySize)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keyprovider.NewLocal("test", root, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(p, sqlKeys{db}, keyring.Options{})
	return idempotency.New(idempotency.Config{Store: db, Sealer: kr, Wait: 50 * time.Millisecond}), db
}

// TestReplayOnlyToTheSameAuthority: a kept answer goes back to the
// principal that got it as long as nothing that decided its request
// changed; a new generation, other roles or attributes, a token without
// the second factor, or a new policy version get EFORBIDDEN and no
// answer, and the key is not run again either.
func TestReplayOnlyToTheSameAuthority(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			k, db := keeper(t, b)
			base := coffer.Principal{ID: "c-1", Kind: coffer.KindClient, Roles: []string{"admin", "ops"},
				Attributes: map[string]string{"team": "red"}, MFA: true, Generation: 3}
			fp := idempotency.Fingerprint("POST", "/v1/clients", []byte(`{}`))
			begin := func(p coffer.Principal, key string) (*idempotency.Claim, *idempotency.Answer, error) {
				return k.Begin(ctx, &p, key, fp)
			}
			keep := func(key, body string) {
				t.Helper()
				claim, kept, err := begin(base, key)
				if err != nil || kept != nil {
					t.Fatalf("first use of %q: %v, %v", key, kept, err)
				}
				if err := claim.Finish(ctx, idempotency.Answer{Status: 201, ContentType: "application/json", Body: []byte(body)}); err != nil {
					t.Fatal(err)
				}
			}
			keep("k1", `{"client_secret":"s1"}`)

			same := base
			same.Roles = []string{"ops", "admin"} // order does not matter
			same.TokenID = "another-token"
			if _, kept, err := begin(same, "k1"); err != nil || kept == nil || string(kept.Body) != `{"client_secret":"s1"}` || kept.Status != 201 {
				t.Fatalf("the same authority's retry: %+v, %v", kept, err)
			}

			changed := map[string]func(p *coffer.Principal){
				"generation": func(p *coffer.Principal) { p.Generation++ },
				"roles cut":  func(p *coffer.Principal) { p.Roles = []string{"ops"} },
				"attributes": func(p *coffer.Principal) { p.Attributes = map[string]string{"team": "blue"} },
				"no MFA":     func(p *coffer.Principal) { p.MFA = false },
			}
			for name, change := range changed {
				p := base
				change(&p)
				_, kept, err := begin(p, "k1")
				if coffer.ErrorCode(err) != coffer.EFORBIDDEN || kept != nil {
					t.Fatalf("%s: replay gave %+v, %v; want EFORBIDDEN and nothing", name, kept, err)
				}
			}

			if _, err := db.SavePolicy(ctx, "yaml", []byte("version: 1\n"), time.Now()); err != nil {
				t.Fatal(err)
			}
			if _, kept, err := begin(base, "k1"); coffer.ErrorCode(err) != coffer.EFORBIDDEN || kept != nil {
				t.Fatalf("after a policy change: %+v, %v; want EFORBIDDEN", kept, err)
			}
			// Under the new policy a new key works as always.
			keep("k2", `{"client_secret":"s2"}`)
			if _, kept, err := begin(base, "k2"); err != nil || kept == nil || string(kept.Body) != `{"client_secret":"s2"}` {
				t.Fatalf("a key kept under the current policy: %+v, %v", kept, err)
			}
		})
	}
}
