package idempotency_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/idempotency"
	"github.com/cofferhq/coffer/internal/policystore"
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

// testPolicy lets ops create clients from 10.0.0.1 only, and issuers
// create clients anywhere.
const testPolicy = `roles:
  ops:
    - resources: ["clients"]
      actions: [create]
      when: request.ip == "10.0.0.1"
  issuer:
    - resources: ["clients"]
      actions: [create]
`

// keeper returns a Keeper over a real store, keyring and policy of
// backend b.
func keeper(t *testing.T, b storetest.Backend) (*idempotency.Keeper, *store.DB, *policystore.Holder) {
	t.Helper()
	ctx := context.Background()
	db := storetest.Open(t, b)
	if _, err := db.SavePolicy(ctx, "yaml", []byte(testPolicy), time.Now()); err != nil {
		t.Fatal(err)
	}
	pol := policystore.New(db, nil, nil)
	if err := pol.Load(ctx); err != nil {
		t.Fatal(err)
	}
	root, err := secret.Random(rand.Reader, keyprovider.RootKeySize)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keyprovider.NewLocal("test", root, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(p, sqlKeys{db}, keyring.Options{})
	return idempotency.New(idempotency.Config{Store: db, Sealer: kr, Decider: pol, Wait: 50 * time.Millisecond}), db, pol
}

// TestReplayOnlyToTheSameAuthority: a kept answer goes back to the
// principal that got it as long as nothing that decided its request
// changed; a new generation, other roles or attributes, a token without
// the second factor, an address the policy refuses, or a policy that no
// longer allows the request get EFORBIDDEN and no answer, and the key is
// not run again either. The replay carries the note of the act.
func TestReplayOnlyToTheSameAuthority(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			k, db, pol := keeper(t, b)
			base := coffer.Principal{ID: "c-1", Kind: coffer.KindClient, Roles: []string{"issuer", "ops"},
				Attributes: map[string]string{"team": "red"}, MFA: true, Generation: 3}
			fp, err := k.Fingerprint(ctx, "POST", "/v1/clients", []byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			begin := func(p coffer.Principal, ip, key string) (*idempotency.Claim, *idempotency.Answer, error) {
				return k.Begin(ctx, &p, ip, key, fp)
			}
			keep := func(p coffer.Principal, key, body string) {
				t.Helper()
				claim, kept, err := begin(p, "10.0.0.1", key)
				if err != nil || kept != nil {
					t.Fatalf("first use of %q: %v, %v", key, kept, err)
				}
				note := coffer.AccessNote{Action: "create", Resource: "clients", Rule: "issuer[0]", Targets: []string{"clients/cl_new"},
					Decided: []coffer.Decided{{Action: "create", Resource: "clients"}}}
				if err := claim.Finish(ctx, idempotency.Answer{Status: 201, ContentType: "application/json", Body: []byte(body), Note: note}); err != nil {
					t.Fatal(err)
				}
			}
			keep(base, "k1", `{"client_secret":"s1"}`)

			same := base
			same.Roles = []string{"ops", "issuer"} // order does not matter
			same.TokenID = "another-token"
			_, kept, err := begin(same, "192.0.2.7", "k1")
			if err != nil || kept == nil || string(kept.Body) != `{"client_secret":"s1"}` || kept.Status != 201 {
				t.Fatalf("the same authority's retry: %+v, %v", kept, err)
			}
			if kept.Note.Action != "create" || kept.Note.Resource != "clients" || len(kept.Note.Targets) != 1 || kept.Note.Targets[0] != "clients/cl_new" {
				t.Fatalf("the replay's note does not name what was made: %+v", kept.Note)
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
				_, kept, err := begin(p, "10.0.0.1", "k1")
				if coffer.ErrorCode(err) != coffer.EFORBIDDEN || kept != nil {
					t.Fatalf("%s: replay gave %+v, %v; want EFORBIDDEN and nothing", name, kept, err)
				}
			}

			// ops alone may create clients from 10.0.0.1 only: its answer
			// is replayed there, not from elsewhere.
			opsOnly := coffer.Principal{ID: "c-2", Kind: coffer.KindClient, Roles: []string{"ops"}, Generation: 1}
			keep(opsOnly, "k2", `{"client_secret":"s2"}`)
			if _, kept, err := begin(opsOnly, "10.0.0.1", "k2"); err != nil || kept == nil {
				t.Fatalf("ops from its allowed address: %+v, %v", kept, err)
			}
			if _, kept, err := begin(opsOnly, "10.9.9.9", "k2"); coffer.ErrorCode(err) != coffer.EFORBIDDEN || kept != nil {
				t.Fatalf("ops from an address its rule refuses: %+v, %v; want EFORBIDDEN", kept, err)
			}

			// A policy that no longer lets issuers create clients: no replay.
			if _, err := db.SavePolicy(ctx, "yaml", []byte("roles:\n  issuer:\n    - resources: [\"collections/x\"]\n      actions: [read]\n"), time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := pol.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if _, kept, err := begin(base, "10.0.0.1", "k1"); coffer.ErrorCode(err) != coffer.EFORBIDDEN || kept != nil {
				t.Fatalf("after the policy cut the right: %+v, %v; want EFORBIDDEN", kept, err)
			}
		})
	}
}

// TestFingerprintIsKeyed: the stored fingerprint is a keyed MAC, not a
// hash anyone can recompute from a guessed body.
func TestFingerprintIsKeyed(t *testing.T) {
	b := storetest.Backends()[0]
	ctx := context.Background()
	k1, _, _ := keeper(t, b)
	k2, _, _ := keeper(t, b)
	body := []byte(`{"items":[{"value":"4111111111111111","type":"card_number"}]}`)
	f1, err := k1.Fingerprint(ctx, "POST", "/v1/tokenize", body)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := k1.Fingerprint(ctx, "POST", "/v1/tokenize", body)
	f2, _ := k2.Fingerprint(ctx, "POST", "/v1/tokenize", body)
	h := sha256.Sum256(append([]byte("POST\n/v1/tokenize\n"+fmt.Sprint(len(body))+"\n"), body...))
	if !bytes.Equal(f1, again) || bytes.Equal(f1, f2) || bytes.Contains(f1, h[:]) || len(f1) == sha256.Size {
		t.Fatalf("fingerprints: %x %x %x (bare hash %x)", f1, again, f2, h)
	}
}
