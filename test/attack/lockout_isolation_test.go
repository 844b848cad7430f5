package attack

import (
	"strconv"
	"testing"
)

// Class: lockout isolation. One account's failures lock that account
// only; a source address is locked only after a far larger spray budget,
// and then only for unknown or failing accounts. A right credential of an
// account not under attack is never refused, while the attacked account
// stays locked after its budget, right credential included (#14.5).

// lockoutSettings make the budgets small enough to spend in a test.
var lockoutSettings = map[string]string{
	"auth.lockout.max_failures":         "4",
	"auth.lockout.address_max_failures": "12",
}

// guessSecret asks for a token for id with secret from client via.
func (n *node) guessSecret(t *testing.T, id, secret string, via string) reply {
	t.Helper()
	return n.send(t, req{method: "POST", path: "/v1/oauth/token", contentType: "application/x-www-form-urlencoded",
		body: []byte("grant_type=client_credentials&client_id=" + id + "&client_secret=" + secret), via: n.From(via)})
}

// loginFrom posts a login from address via.
func (n *node) loginFrom(t *testing.T, username, password, via string) reply {
	t.Helper()
	return n.send(t, req{method: "POST", path: "/v1/auth/login", contentType: "application/json",
		body: []byte(`{"username":"` + username + `","password":"` + password + `"}`), via: n.From(via)})
}

// TestLockoutIsolation: failures of one client and of one user, from one
// address, lock those two accounts and nobody else behind that address.
func TestLockoutIsolation(t *testing.T) {
	forEachBackend(t, setup{settings: lockoutSettings}, func(t *testing.T, n *node) {
		w := plantWorld(t, n)
		nat := n.freshIP() // the attacker and the services share it
		for i := 0; i < 6; i++ {
			r := n.guessSecret(t, w.clientA, "cs_wrong"+marker, nat)
			if r.status != 401 && r.status != 429 {
				t.Fatalf("guess %d: %s", i, r)
			}
			l := n.loginFrom(t, "alice", "wrong password "+marker+strconv.Itoa(i), nat)
			if l.status != 401 && l.status != 429 {
				t.Fatalf("wrong password %d: %s", i, l)
			}
		}
		// The attacked accounts are locked, right credentials included.
		r := n.guessSecret(t, w.clientA, "cs_wrong"+marker, nat)
		wantOAuth(t, r, 429, "invalid_client", "too many failed attempts; try again later")
		if r.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		l := n.loginFrom(t, "alice", alicePassword, nat)
		wantProblem(t, l, 429, "too many failed attempts; try again later")
		if l.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		// Everyone else behind the address signs in.
		if r := n.guessSecret(t, n.Init.ClientID, n.Init.ClientSecret, nat); r.status != 200 {
			t.Fatalf("the admin behind the attacked address: %s", r)
		}
		id, secret := n.newClientSecret(t, "behind-nat", "support")
		if r := n.guessSecret(t, id, secret, nat); r.status != 200 {
			t.Fatalf("another service behind the attacked address: %s", r)
		}
		noEchoInLog(t, n)
	})
}

// TestAddressSprayBudget: an address guessing across many accounts is
// stopped once it spends its budget: unknown and failing accounts are
// refused, and a wrong guess at a fresh account is the same 429 (no
// oracle); a right credential of a fresh account still works.
func TestAddressSprayBudget(t *testing.T) {
	forEachBackend(t, setup{settings: lockoutSettings}, func(t *testing.T, n *node) {
		spray := n.freshIP()
		for i := 0; i < 12; i++ {
			r := n.guessSecret(t, "cl_"+marker+strconv.Itoa(i), "cs_guess", spray)
			if r.status != 401 {
				t.Fatalf("spray %d within the budget: %s", i, r)
			}
		}
		r := n.guessSecret(t, "cl_"+marker+"x", "cs_guess", spray)
		wantOAuth(t, r, 429, "invalid_client", "too many failed attempts; try again later")
		l := n.loginFrom(t, "nobody"+marker, "guess "+marker, spray)
		wantProblem(t, l, 429, "too many failed attempts; try again later")
		// The same 429 for a known account's wrong secret: existence does
		// not show.
		r = n.guessSecret(t, n.Init.ClientID, "cs_wrong", spray)
		wantOAuth(t, r, 429, "invalid_client", "too many failed attempts; try again later")
		// That account is failing now: its right secret waits too.
		if r := n.guessSecret(t, n.Init.ClientID, n.Init.ClientSecret, spray); r.status != 429 {
			t.Fatalf("a failing account's right secret from a spraying address: %s", r)
		}
		// A fresh account with its right secret is never refused.
		id, secret := n.newClientSecret(t, "fresh", "support")
		if r := n.guessSecret(t, id, secret, spray); r.status != 200 {
			t.Fatalf("a fresh account's right secret from a spraying address: %s", r)
		}
		// From another address the admin, one failure into its budget of
		// four, signs in.
		if r := n.guessSecret(t, n.Init.ClientID, n.Init.ClientSecret, n.freshIP()); r.status != 200 {
			t.Fatalf("the admin from another address: %s", r)
		}
		noEchoInLog(t, n)
	})
}

// newClientSecret creates a client and returns its id and secret.
func (n *node) newClientSecret(t testing.TB, name string, roles ...string) (string, string) {
	t.Helper()
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	n.must(t, 201, "POST", "/v1/clients", n.admin, map[string]any{"name": name, "roles": roles}, &out)
	return out.ClientID, out.ClientSecret
}
