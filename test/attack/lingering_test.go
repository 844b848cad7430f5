package attack

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// Lingering access (#15.5, #15.6): access must end with its grant. A
// token whose principal was deleted, disabled, given a new secret or
// other roles is refused at once; a revoked token stays refused from its
// exp to exp plus the verification skew; a signing key rotated out
// verifies only for a token's lifetime, and a revoked one verifies
// nothing. And resource namespaces (#15.9): no pattern written for
// transit keys reaches Coffer's own keys.

// principalChangeAttacks: callers without the right to change a
// principal, or to grant what it holds, change nothing; unknown and
// injected ids are 404.
func principalChangeAttacks() []attack {
	var out []attack
	for _, rt := range []struct{ route, method, kind string }{
		{"PATCH /v1/clients/{id}", "PATCH", "clients"},
		{"PATCH /v1/users/{id}", "PATCH", "users"},
		{"DELETE /v1/users/{id}", "DELETE", "users"},
	} {
		out = append(out, attack{rt.route, "no right, self-promotion, unknown and injected ids", func(t *testing.T, w *world) {
			n := w.n
			target := w.clientA
			if rt.kind == "users" {
				target = w.aliceID
			}
			body := map[string]any{"roles": []string{"admin"}}
			if rt.method == "DELETE" {
				body = nil
			}
			action := "update"
			if rt.method == "DELETE" {
				action = "delete"
			}
			for _, tok := range []string{w.tokenA, w.tokenSupport, w.tokenClerk} {
				wantProblem(t, n.call(t, rt.method, "/v1/"+rt.kind+"/"+target, tok, body), 403,
					"not allowed to "+action+" "+rt.kind)
			}
			// A customer cannot make itself admin.
			if rt.kind == "clients" {
				wantProblem(t, n.call(t, rt.method, "/v1/clients/"+w.clientA, w.tokenA, body), 403, "not allowed to update clients")
			}
			admin := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			for _, id := range []string{"unknown", esc("x' OR '1'='1" + marker)} {
				r := n.call(t, rt.method, "/v1/"+rt.kind+"/"+id, admin, body)
				if r.status != 404 {
					t.Errorf("%s %s: %s, want 404", rt.method, id, r)
				}
			}
		}})
	}
	out = append(out, attack{"POST /v1/admin/keys/revoke-signing", "no right, unknown and malformed kids", func(t *testing.T, w *world) {
		n := w.n
		for _, tok := range []string{w.tokenA, w.tokenSupport, w.tokenClerk} {
			wantProblem(t, n.call(t, "POST", "/v1/admin/keys/revoke-signing", tok, map[string]string{"kid": "x"}), 403,
				"not allowed to admin system/keys/jwt/signing")
		}
		admin := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		if r := n.call(t, "POST", "/v1/admin/keys/revoke-signing", admin, map[string]string{"kid": "nope'OR'1'='1" + marker}); r.status != 404 {
			t.Errorf("unknown kid: %s, want 404", r)
		}
		for _, kid := range []string{"", "nope' OR 1=1 --", strings.Repeat("k", 129)} {
			if r := n.call(t, "POST", "/v1/admin/keys/revoke-signing", admin, map[string]string{"kid": kid}); r.status != 422 {
				t.Errorf("kid %q: %s, want 422", kid, r)
			}
		}
	}})
	return out
}

// newUser creates a user with roles and returns its id and a token.
func (n *node) newUser(t testing.TB, name string, roles ...string) (id, token string) {
	t.Helper()
	var out struct {
		ID string `json:"id"`
	}
	n.must(t, 201, "POST", "/v1/users", n.Token(n.Init.ClientID, n.Init.ClientSecret),
		map[string]any{"username": name, "password": alicePassword, "roles": roles}, &out)
	r := n.call(t, "POST", "/v1/auth/login", "", map[string]string{"username": name, "password": alicePassword})
	if r.status != 200 {
		t.Fatalf("login %s: %s", name, r)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	mustJSON(t, r.body, &tok)
	return out.ID, tok.AccessToken
}

// stillOut checks that tok opens nothing: a 401 on a read, on the
// creation of an admin client, and inactive on introspection.
func stillOut(t *testing.T, n *node, tok, what string) {
	t.Helper()
	want401(t, n.call(t, "GET", "/v1/clients", tok, nil))
	want401(t, n.call(t, "POST", "/v1/clients", tok, map[string]any{"name": "heir" + marker, "roles": []string{"admin"}}))
	r := n.form(t, "/v1/oauth/introspect", "token="+tok, map[string]string{
		"Authorization": "Bearer " + n.Token(n.Init.ClientID, n.Init.ClientSecret)})
	if r.status != 200 || !strings.Contains(string(r.body), `"active":false`) {
		t.Fatalf("%s: introspection %s, want active:false", what, r)
	}
}

func TestLingeringAccess(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		admin := func() string { return n.Token(n.Init.ClientID, n.Init.ClientSecret) }
		t.Run("deleted client", func(t *testing.T) {
			id, tok := n.newClient(t, "doomed", "admin")
			n.must(t, 204, "DELETE", "/v1/clients/"+id, admin(), nil, nil)
			stillOut(t, n, tok, "deleted client")
		})
		t.Run("rotated secret", func(t *testing.T) {
			id, tok := n.newClient(t, "rotated", "admin")
			n.must(t, 200, "POST", "/v1/clients/"+id+"/rotate", admin(), nil, nil)
			stillOut(t, n, tok, "rotated secret")
		})
		t.Run("disabled client", func(t *testing.T) {
			id, tok := n.newClient(t, "disabled", "admin")
			n.must(t, 200, "PATCH", "/v1/clients/"+id, admin(), map[string]any{"disabled": true}, nil)
			stillOut(t, n, tok, "disabled client")
		})
		t.Run("demoted client", func(t *testing.T) {
			id, tok := n.newClient(t, "demoted", "admin")
			n.must(t, 200, "PATCH", "/v1/clients/"+id, admin(), map[string]any{"roles": []string{}}, nil)
			stillOut(t, n, tok, "demoted client")
		})
		t.Run("deleted user", func(t *testing.T) {
			id, tok := n.newUser(t, "deleted-user", "admin")
			n.must(t, 204, "DELETE", "/v1/users/"+id, admin(), nil, nil)
			stillOut(t, n, tok, "deleted user")
		})
		t.Run("disabled user", func(t *testing.T) {
			id, tok := n.newUser(t, "disabled-user", "admin")
			n.must(t, 200, "PATCH", "/v1/users/"+id, admin(), map[string]any{"disabled": true}, nil)
			stillOut(t, n, tok, "disabled user")
		})
		t.Run("demoted user", func(t *testing.T) {
			id, tok := n.newUser(t, "demoted-user", "admin")
			n.must(t, 200, "PATCH", "/v1/users/"+id, admin(), map[string]any{"roles": []string{}}, nil)
			stillOut(t, n, tok, "demoted user")
		})
		t.Run("revoked signing key", func(t *testing.T) {
			_, tok := n.newClient(t, "signed", "admin")
			kid := kidOf(t, tok)
			n.must(t, 200, "POST", "/v1/admin/keys/revoke-signing", admin(), map[string]string{"kid": kid}, nil)
			n.admin = admin() // the harness's admin token was signed by the same key
			stillOut(t, n, tok, "revoked signing key")
			if r := n.call(t, "GET", "/.well-known/jwks.json", "", nil); strings.Contains(string(r.body), kid) {
				t.Fatal("the revoked key is still published")
			}
		})
		t.Run("revoked token between exp and exp+skew", func(t *testing.T) {
			id, _ := n.newClient(t, "revoked", "admin")
			var secret struct {
				ClientSecret string `json:"client_secret"`
			}
			n.must(t, 200, "POST", "/v1/clients/"+id+"/rotate", admin(), nil, &secret)
			tok := n.Token(id, secret.ClientSecret)
			r := n.form(t, "/v1/oauth/revoke", "token="+tok+"&client_id="+id+"&client_secret="+secret.ClientSecret, nil)
			if r.status != 200 {
				t.Fatalf("revoke: %s", r)
			}
			n.Clock.Advance(15*time.Minute + 10*time.Second)
			n.reopen(setup{}) // a node that remembers nothing in memory
			n.admin = admin()
			want401(t, n.call(t, "GET", "/v1/clients", tok, nil))
		})
		t.Run("old signing key after a token lifetime", func(t *testing.T) {
			_, tok := n.newClient(t, "old-key", "admin")
			kid := kidOf(t, tok)
			n.must(t, 200, "POST", "/v1/admin/keys/rotate", admin(), map[string]string{"key_id": "jwt/signing"}, nil)
			n.Clock.Advance(15*time.Minute + 31*time.Second)
			n.reopen(setup{})
			n.admin = admin()
			if r := n.call(t, "GET", "/.well-known/jwks.json", "", nil); strings.Contains(string(r.body), kid) {
				t.Fatal("a signing key rotated out is still published after a token lifetime plus skew")
			}
			want401(t, n.call(t, "GET", "/v1/clients", tok, nil))
		})
	})
}

// kidOf returns the kid of a token's header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		KID string `json:"kid"`
	}
	mustJSON(t, h, &hdr)
	return hdr.KID
}

// TestSystemKeysNamespace: a role granted admin on keys/a* and keys/t*
// (meant for transit keys) rotates neither audit/hmac, audit/signing,
// tokens/card_number/fpe nor the token signing key; it still administers
// the transit keys it names. A role granted system/keys/audit/* rotates
// the audit keys and nothing else.
func TestSystemKeysNamespace(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		n.must(t, 204, "PUT", "/v1/policy", n.admin, `{"roles":{"admin":[{"resources":["*"],"actions":["*"]}],
			"transit":[{"resources":["keys/a*","keys/t*"],"actions":["admin","encrypt"]}],
			"auditkeys":[{"resources":["system/keys/audit/*"],"actions":["admin"]}]}}`, nil)
		// Make the card FPE key exist.
		n.must(t, 200, "POST", "/v1/tokenize", n.admin, map[string]any{"items": []map[string]string{
			{"value": "4111111111111111", "type": "card_number", "mode": "random"}}}, nil)
		_, transit := n.newClient(t, "transit", "transit")
		_, auditKeys := n.newClient(t, "auditkeys", "auditkeys")
		for _, key := range []string{"audit/hmac", "audit/signing", "tokens/card_number/fpe", "tokens/card_number", "jwt/signing"} {
			wantProblem(t, n.call(t, "POST", "/v1/admin/keys/rotate", transit, map[string]string{"key_id": key}), 403,
				"not allowed to admin system/keys/"+key)
		}
		for _, op := range []string{"retire", "destroy", "unretire"} {
			wantProblem(t, n.call(t, "POST", "/v1/admin/keys/"+op, transit, map[string]any{"key_id": "audit/hmac", "version": 1}), 403,
				"not allowed to admin system/keys/audit/hmac")
		}
		wantProblem(t, n.call(t, "POST", "/v1/admin/keys/revoke-signing", transit, map[string]string{"kid": "x"}), 403,
			"not allowed to admin system/keys/jwt/signing")
		// The transit keys it is meant for.
		n.must(t, 201, "POST", "/v1/keys", n.admin, map[string]string{"name": "alpha"}, nil)
		n.must(t, 200, "POST", "/v1/keys/alpha/rotate", transit, nil, nil)
		// system/keys/audit/* reaches the audit keys only.
		n.must(t, 200, "POST", "/v1/admin/keys/rotate", auditKeys, map[string]string{"key_id": "audit/hmac"}, nil)
		wantProblem(t, n.call(t, "POST", "/v1/admin/keys/rotate", auditKeys, map[string]string{"key_id": "tokens/card_number/fpe"}), 403,
			"not allowed to admin system/keys/tokens/card_number/fpe")
	})
}
