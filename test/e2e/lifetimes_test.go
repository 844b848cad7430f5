package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testclock"
)

// #15.5 and #15.6: access ends with its grant. A token is refused at once
// (401, introspection active:false) when its principal is deleted,
// disabled, gets a new secret, new roles or attributes, or has its MFA
// reset; a revoked token stays refused up to exp plus the verification
// skew; a signing key rotated out verifies only for a token's lifetime,
// and a revoked one at once verifies nothing.

// callAt sends a JSON request (body nil: none) with a bearer token to the
// node at base (n.url when "") and returns the status and body.
func (n *node) callAt(base, method, path, token string, body any) (int, []byte) {
	n.t.Helper()
	if base == "" {
		base = n.URL
	}
	saved := n.URL
	n.URL = base
	defer func() { n.URL = saved }()
	if body == nil {
		st, _, b := n.do(method, path, token, "", nil)
		return st, b
	}
	b, _ := json.Marshal(body)
	st, _, out := n.do(method, path, token, "application/json", strings.NewReader(string(b)))
	return st, out
}

// adminToken is a fresh token of the bootstrap admin client.
func (n *node) adminToken() string {
	n.t.Helper()
	return n.Token(n.Init.ClientID, n.Init.ClientSecret)
}

// active asks the node at base whether tok is active (RFC 7662).
func (n *node) active(base, tok string) bool {
	n.t.Helper()
	saved := n.URL
	if base != "" {
		n.URL = base
	}
	defer func() { n.URL = saved }()
	st, _, b := n.do("POST", "/v1/oauth/introspect", n.adminToken(), "application/x-www-form-urlencoded",
		strings.NewReader("token="+tok))
	if st != 200 {
		n.t.Fatalf("introspect: %d %s", st, b)
	}
	var out struct {
		Active bool `json:"active"`
	}
	mustJSON(n.t, b, &out)
	return out.Active
}

// statusAt fails unless a call of tok on the node at base answers want.
func (n *node) statusAt(base, tok string, want int, what string) {
	n.t.Helper()
	if st, b := n.callAt(base, "GET", "/v1/clients", tok, nil); st != want {
		n.t.Fatalf("%s: GET /v1/clients answered %d %s, want %d", what, st, b, want)
	}
}

// refused checks that tok is refused by the node at base and reported
// inactive by introspection.
func (n *node) refused(base, tok, what string) {
	n.t.Helper()
	n.statusAt(base, tok, 401, what)
	if n.active(base, tok) {
		n.t.Fatalf("%s: introspection says the token is active", what)
	}
}

// lifetimesPolicy lets the clients role read and manage clients (so a
// token's effect is visible on GET /v1/clients), and nothing else.
const lifetimesPolicy = `
roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  clients:
    - resources: ["clients"]
      actions: [read]
  other:
    - resources: ["users"]
      actions: [read]
`

func TestDeletedClientTokensAreRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		id, secret := n.newServiceClient("doomed", "admin")
		tok := n.Token(id, secret)
		n.statusAt("", tok, 200, "before the delete")
		if !n.active("", tok) {
			t.Fatal("introspection: the fresh token is not active")
		}
		if st, b := n.callAt("", "DELETE", "/v1/clients/"+id, n.adminToken(), nil); st != 204 {
			t.Fatalf("delete: %d %s", st, b)
		}
		n.refused("", tok, "a deleted client's token")
		// Nor can it make itself a new admin client.
		if st, _ := n.callAt("", "POST", "/v1/clients", tok, map[string]any{"name": "heir", "roles": []string{"admin"}}); st != 401 {
			t.Fatalf("a deleted client's token created a client: %d", st)
		}
	})
}

func TestClientSecretRotationEndsItsTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		id, secret := n.newServiceClient("rotated", "admin")
		tok := n.Token(id, secret)
		n.statusAt("", tok, 200, "before the rotation")
		st, b := n.callAt("", "POST", "/v1/clients/"+id+"/rotate", n.adminToken(), map[string]any{})
		if st != 200 {
			t.Fatalf("rotate: %d %s", st, b)
		}
		var nc struct {
			ClientSecret string `json:"client_secret"`
		}
		mustJSON(t, b, &nc)
		n.refused("", tok, "a token got with the old secret")
		n.statusAt("", n.Token(id, nc.ClientSecret), 200, "a token got with the new secret")
	})
}

func TestClientRoleChangeAndDisableEndItsTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		if err := n.Admin.PutPolicy(context.Background(), []byte(lifetimesPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		id, secret := n.newServiceClient("changing", "clients")
		tok := n.Token(id, secret)
		n.statusAt("", tok, 200, "with role clients")
		if st, b := n.callAt("", "PATCH", "/v1/clients/"+id, n.adminToken(), map[string]any{"roles": []string{"other"}}); st != 200 {
			t.Fatalf("change roles: %d %s", st, b)
		}
		n.refused("", tok, "a token issued before a role change")
		tok = n.Token(id, secret)
		n.statusAt("", tok, 403, "a new token under the new role")
		if st, b := n.callAt("", "PATCH", "/v1/clients/"+id, n.adminToken(), map[string]any{"attributes": map[string]string{"team": "x"}}); st != 200 {
			t.Fatalf("change attributes: %d %s", st, b)
		}
		n.refused("", tok, "a token issued before an attribute change")
		tok = n.Token(id, secret)
		if st, b := n.callAt("", "PATCH", "/v1/clients/"+id, n.adminToken(), map[string]any{"disabled": true}); st != 200 {
			t.Fatalf("disable: %d %s", st, b)
		}
		n.refused("", tok, "a disabled client's token")
		if st, _ := n.ccToken(id, secret); st != 401 {
			t.Fatalf("a disabled client got a token: %d", st)
		}
	})
}

func TestUserChangesEndTheirTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		if err := n.Admin.PutPolicy(context.Background(), []byte(lifetimesPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		uid := n.newUser("erin", "clients")
		login := func() string {
			t.Helper()
			st, _, tr := n.login("erin", userPassword)
			if st != 200 || tr.AccessToken == "" {
				t.Fatalf("login: %d %+v", st, tr)
			}
			return tr.AccessToken
		}
		tok := login()
		n.statusAt("", tok, 200, "with role clients")

		// A change of roles.
		if st, b := n.callAt("", "PATCH", "/v1/users/"+uid, n.adminToken(), map[string]any{"roles": []string{"other"}}); st != 200 {
			t.Fatalf("change roles: %d %s", st, b)
		}
		n.refused("", tok, "a user token issued before a role change")
		n.statusAt("", login(), 403, "a new user token under the new role")

		// An MFA reset: the tokens of sign-ins before it end.
		tok = login()
		n.enrolTOTP(tok, nil)
		if st, b := n.callAt("", "DELETE", "/v1/users/"+uid+"/mfa", n.adminToken(), nil); st != 204 {
			t.Fatalf("reset MFA: %d %s", st, b)
		}
		n.refused("", tok, "a user token issued before an MFA reset")

		// Disabling.
		tok = login()
		if st, b := n.callAt("", "PATCH", "/v1/users/"+uid, n.adminToken(), map[string]any{"disabled": true}); st != 200 {
			t.Fatalf("disable: %d %s", st, b)
		}
		n.refused("", tok, "a disabled user's token")
		if st, _, _ := n.login("erin", userPassword); st != 401 {
			t.Fatalf("a disabled user signed in: %d", st)
		}
		if st, b := n.callAt("", "PATCH", "/v1/users/"+uid, n.adminToken(), map[string]any{"disabled": false}); st != 200 {
			t.Fatalf("enable: %d %s", st, b)
		}

		// Deleting.
		tok = login()
		n.statusAt("", tok, 403, "enabled again, role other")
		if st, b := n.callAt("", "DELETE", "/v1/users/"+uid, n.adminToken(), nil); st != 204 {
			t.Fatalf("delete: %d %s", st, b)
		}
		n.refused("", tok, "a deleted user's token")
		if st, _, _ := n.login("erin", userPassword); st != 401 {
			t.Fatalf("a deleted user signed in: %d", st)
		}
	})
}

// A revoked token is refused from its exp to exp plus the skew too: the
// revocation record outlives the token. The node is restarted after the
// clock passed exp, so no revocation it remembers in memory helps.
func TestRevokedTokenStaysRefusedUntilExpPlusSkew(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		clock := testclock.New(time.Now().UTC())
		n.Stop()
		n.serveAt("127.0.0.1:0", clock.Now)
		id, secret := n.newServiceClient("revoker", "admin")
		tok := n.Token(id, secret)
		n.statusAt("", tok, 200, "before the revocation")
		st, _, b := n.do("POST", "/v1/oauth/revoke", "", "application/x-www-form-urlencoded",
			strings.NewReader("token="+tok+"&client_id="+id+"&client_secret="+secret))
		if st != 200 {
			t.Fatalf("revoke: %d %s", st, b)
		}
		n.statusAt("", tok, 401, "just revoked")
		// Past exp (15m), within the 30 s skew verification allows.
		clock.Advance(15*time.Minute + 10*time.Second)
		n.Stop()
		n.serveAt("127.0.0.1:0", clock.Now)
		n.statusAt("", tok, 401, "a revoked token between exp and exp+skew")
	})
}

// tokenKID returns the kid in an access token's header.
func tokenKID(t *testing.T, tok string) string {
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

// jwksKIDs returns the kids the node publishes.
func (n *node) jwksKIDs() []string {
	n.t.Helper()
	st, _, b := n.do("GET", "/.well-known/jwks.json", "", "", nil)
	if st != 200 {
		n.t.Fatalf("jwks: %d %s", st, b)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	mustJSON(n.t, b, &set)
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KID)
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// #15.6: a signing key rotated out verifies the tokens it signed for
// their lifetime plus the skew, and not ~31 days.
func TestRotatedSigningKeyVerifiesOnlyForATokenLifetime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		clock := testclock.New(time.Now().UTC())
		n.Stop()
		n.serveAt("127.0.0.1:0", clock.Now)
		old := n.adminToken()
		oldKID := tokenKID(t, old)
		if st, b := n.callAt("", "POST", "/v1/admin/keys/rotate", n.adminToken(), map[string]string{"key_id": "jwt/signing"}); st != 200 {
			t.Fatalf("rotate: %d %s", st, b)
		}
		n.statusAt("", old, 200, "a token of the rotated-out key, within its lifetime")
		fresh := n.adminToken()
		if tokenKID(t, fresh) == oldKID {
			t.Fatal("the node still signs with the rotated-out key")
		}
		recs, err := n.openStore().SigningKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.KID == oldKID && r.NotAfter.After(clock.Now().Add(15*time.Minute+30*time.Second)) {
				t.Fatalf("the rotated-out key verifies until %s, more than a token lifetime plus skew after %s", r.NotAfter, clock.Now())
			}
		}
		clock.Advance(15*time.Minute + 31*time.Second)
		n.Stop()
		n.serveAt("127.0.0.1:0", clock.Now)
		if has(n.jwksKIDs(), oldKID) {
			t.Fatal("the rotated-out key is still published after a token lifetime plus skew")
		}
	})
}

// #15.6: revoke-signing drops a leaked key at once: every token it
// signed is refused, the key is no longer published, and the call is
// audited.
func TestRevokeSigningKeyRefusesItsTokensAtOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		leaked := n.adminToken()
		kid := tokenKID(t, leaked)
		n.statusAt("", leaked, 200, "before the revocation")
		st, b := n.callAt("", "POST", "/v1/admin/keys/revoke-signing", n.adminToken(), map[string]string{"kid": kid})
		if st != 200 {
			t.Fatalf("revoke-signing: %d %s", st, b)
		}
		var out struct {
			KID          string `json:"kid"`
			NewActiveKID string `json:"new_active_kid"`
		}
		mustJSON(t, b, &out)
		if out.KID != kid || out.NewActiveKID == "" || out.NewActiveKID == kid {
			t.Fatalf("revoke-signing answered %s", b)
		}
		n.refused("", leaked, "a token of a revoked signing key")
		if has(n.jwksKIDs(), kid) {
			t.Fatal("the revoked key is still published")
		}
		fresh := n.adminToken()
		if tokenKID(t, fresh) != out.NewActiveKID {
			t.Fatal("new tokens are not signed with the new key")
		}
		n.statusAt("", fresh, 200, "a token of the new key")
		if st, _ := n.callAt("", "POST", "/v1/admin/keys/revoke-signing", fresh, map[string]string{"kid": kid}); st != 404 {
			t.Fatalf("revoking an unknown key: %d, want 404", st)
		}
		evs := auditOf(t, n, fresh, "keys.revoke_signing")
		if len(evs) == 0 {
			t.Fatal("no keys.revoke_signing audit event")
		}
	})
}

// auditOf returns the resources and statuses of the audit events of action.
func auditOf(t *testing.T, n *node, tok, action string) []string {
	t.Helper()
	st, b := n.callAt("", "GET", "/v1/audit/events?limit=1000&action="+action, tok, nil)
	if st != 200 {
		t.Fatalf("audit: %d %s", st, b)
	}
	var out struct {
		Events []struct {
			Resource string `json:"resource"`
			Status   int    `json:"status"`
		} `json:"events"`
	}
	mustJSON(t, b, &out)
	var res []string
	for _, e := range out.Events {
		res = append(res, e.Resource)
	}
	return res
}

// peerURL serves n's deployment (its configuration, its PostgreSQL) as a
// second node named name and returns its base URL.
func (n *node) peerURL(t *testing.T, name string) string {
	t.Helper()
	p := n.Peer("COFFER_NODE=" + name)
	p.Logs, p.App = n.Logs, app.Options{}
	p.Serve("127.0.0.1:0")
	return p.URL
}

// Two nodes on one PostgreSQL: a change made on node A ends the tokens on
// node B with the very next request, though B verified (and cached) them
// a moment before: no node answers from a stale copy.
func TestTwoNodesRefuseAtOnceAfterAChangeOnOne(t *testing.T) {
	b := storetest.Backends()[len(storetest.Backends())-1]
	if b.Name != "postgres" {
		t.Skip("needs PostgreSQL")
	}
	n := start(t, b)
	if err := n.Admin.PutPolicy(context.Background(), []byte(lifetimesPolicy), "yaml"); err != nil {
		t.Fatal(err)
	}
	nodeB := n.peerURL(t, "node-b")

	// Each case: a token valid on B, a change on A, B refuses at once.
	cases := []struct {
		name   string
		token  func() string
		change func(tok string)
	}{
		{"client deleted", func() string {
			id, secret := n.newServiceClient("gone", "clients")
			return n.Token(id, secret)
		}, func(tok string) {
			if st, b := n.callAt("", "DELETE", "/v1/clients/"+subOf(t, tok), n.adminToken(), nil); st != 204 {
				t.Fatalf("delete: %d %s", st, b)
			}
		}},
		{"client roles changed", func() string {
			id, secret := n.newServiceClient("demoted", "clients")
			return n.Token(id, secret)
		}, func(tok string) {
			if st, b := n.callAt("", "PATCH", "/v1/clients/"+subOf(t, tok), n.adminToken(), map[string]any{"roles": []string{"other"}}); st != 200 {
				t.Fatalf("patch: %d %s", st, b)
			}
		}},
		{"client secret rotated", func() string {
			id, secret := n.newServiceClient("rotated", "clients")
			return n.Token(id, secret)
		}, func(tok string) {
			if st, b := n.callAt("", "POST", "/v1/clients/"+subOf(t, tok)+"/rotate", n.adminToken(), map[string]any{}); st != 200 {
				t.Fatalf("rotate: %d %s", st, b)
			}
		}},
		{"user disabled", func() string {
			n.newUser("frank", "clients")
			_, _, tr := n.login("frank", userPassword)
			return tr.AccessToken
		}, func(tok string) {
			if st, b := n.callAt("", "PATCH", "/v1/users/"+subOf(t, tok), n.adminToken(), map[string]any{"disabled": true}); st != 200 {
				t.Fatalf("disable: %d %s", st, b)
			}
		}},
		{"token revoked", func() string {
			id, secret := n.newServiceClient("revoked", "clients")
			return n.Token(id, secret) + "\x00" + id + ":" + secret
		}, func(tok string) {}},
		{"signing key revoked", func() string {
			id, secret := n.newServiceClient("signed", "clients")
			return n.Token(id, secret)
		}, func(tok string) {
			if st, b := n.callAt("", "POST", "/v1/admin/keys/revoke-signing", n.adminToken(), map[string]string{"kid": tokenKID(t, tok)}); st != 200 {
				t.Fatalf("revoke-signing: %d %s", st, b)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token()
			if tc.name == "token revoked" {
				parts := strings.SplitN(tok, "\x00", 2)
				tok = parts[0]
				tc.change = func(tok string) {
					id, secret, _ := strings.Cut(parts[1], ":")
					st, _, b := n.do("POST", "/v1/oauth/revoke", "", "application/x-www-form-urlencoded",
						strings.NewReader("token="+tok+"&client_id="+id+"&client_secret="+secret))
					if st != 200 {
						t.Fatalf("revoke: %d %s", st, b)
					}
				}
			}
			n.statusAt(nodeB, tok, 200, "on node B before the change")
			n.statusAt(nodeB, tok, 200, "on node B again (now cached)")
			tc.change(tok)
			n.statusAt(nodeB, tok, 401, "on node B right after the change on node A")
			n.statusAt("", tok, 401, "on node A")
		})
	}
}

// subOf returns the sub claim of an access token.
func subOf(t *testing.T, tok string) string {
	t.Helper()
	p, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Sub string `json:"sub"`
	}
	mustJSON(t, p, &c)
	return c.Sub
}
