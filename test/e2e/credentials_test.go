package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store/storetest"

	"github.com/cofferhq/coffer/internal/secret"
)

const userPassword = "correct horse battery staple 42"

// ccToken asks for a token with the client-credentials grant through
// golang.org/x/oauth2 over HTTPS and returns the HTTP status and, on a
// refusal, the Retry-After header.
func (n *node) ccToken(id, secret string) (int, string) {
	n.t.Helper()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: n.URL + "/v1/oauth/token",
		AuthStyle: oauth2.AuthStyleInHeader}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, n.HTTP)
	_, err := cc.Token(ctx)
	if err == nil {
		return 200, ""
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		n.t.Fatalf("token request: %v", err)
	}
	return re.Response.StatusCode, re.Response.Header.Get("Retry-After")
}

// login posts a username and password and returns the status and answer.
func (n *node) login(username, password string) (int, http.Header, tokenResp) {
	n.t.Helper()
	st, h, b := n.postJSON("/v1/auth/login", "", map[string]string{"username": username, "password": password})
	var tr tokenResp
	if st == 200 {
		mustJSON(n.t, b, &tr)
	}
	return st, h, tr
}

// newUser creates a user with the given roles through the admin client.
func (n *node) newUser(username string, roles ...string) string {
	n.t.Helper()
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	st, _, b := n.postJSON("/v1/users", tok, map[string]any{"username": username, "password": userPassword, "roles": roles})
	if st != 201 {
		n.t.Fatalf("create user %q: %d %s", username, st, b)
	}
	var out struct {
		ID string `json:"id"`
	}
	mustJSON(n.t, b, &out)
	return out.ID
}

// newServiceClient creates a client and returns its id and secret.
func (n *node) newServiceClient(name string, roles ...string) (string, string) {
	n.t.Helper()
	c, err := n.Admin.CreateClient(context.Background(), name, roles, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	return c.ClientID, c.ClientSecret
}

// enrolTOTP enrols and confirms TOTP for a signed-in user and returns the
// secret and the recovery codes.
func (n *node) enrolTOTP(token string, body map[string]any) (string, []string) {
	n.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	st, _, b := n.postJSON("/v1/auth/mfa/totp", token, body)
	if st != 200 {
		n.t.Fatalf("enrol: %d %s", st, b)
	}
	var en struct {
		Secret        string   `json:"secret"`
		RecoveryCodes []string `json:"recovery_codes"`
	}
	mustJSON(n.t, b, &en)
	code, err := totp.GenerateCode(en.Secret, time.Now())
	if err != nil {
		n.t.Fatal(err)
	}
	if st, _, b := n.postJSON("/v1/auth/mfa/totp/confirm", token, map[string]string{"code": code}); st != 204 {
		n.t.Fatalf("confirm: %d %s", st, b)
	}
	return en.Secret, en.RecoveryCodes
}

// TestLockoutIsolation: one account's failures lock that account only.
// Wrong client secrets, wrong passwords and wrong MFA codes from one
// address leave every other account's right credential working from that
// address, while the attacked account stays locked, right credential
// included (#14.5).
func TestLockoutIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		victimID, victimSecret := n.newServiceClient("victim")
		n.newUser("bob")
		n.newUser("carol")
		mfaTok := func() string {
			n.newUser("dave")
			_, _, tr := n.login("dave", userPassword)
			n.enrolTOTP(tr.AccessToken, nil)
			_, _, tr = n.login("dave", userPassword)
			if !tr.MFARequired {
				t.Fatal("dave's login asks for no second factor")
			}
			return tr.MFAToken
		}()

		// Client secrets: the victim is locked, the admin is not.
		locked := false
		for i := 0; i < 8; i++ {
			st, ra := n.ccToken(victimID, "cs_wrong")
			if st == 429 {
				if ra == "" {
					t.Fatal("429 without Retry-After")
				}
				locked = true
			} else if st != 401 {
				t.Fatalf("wrong secret %d: %d", i, st)
			}
		}
		if !locked {
			t.Fatal("eight wrong secrets and the client is not locked out")
		}
		if st, _ := n.ccToken(victimID, victimSecret); st != 429 {
			t.Fatalf("the attacked client's right secret during its lockout: %d, want 429", st)
		}
		if st, _ := n.ccToken(n.Init.ClientID, n.Init.ClientSecret); st != 200 {
			t.Fatalf("the admin's right secret after another client's failures from the same address: %d, want 200", st)
		}

		// Passwords: bob is locked, carol and the admin are not.
		for i := 0; i < 8; i++ {
			if st, _, _ := n.login("bob", "wrong password "+strconv.Itoa(i)); st != 401 && st != 429 {
				t.Fatalf("wrong password %d: %d", i, st)
			}
		}
		if st, h, _ := n.login("bob", userPassword); st != 429 || h.Get("Retry-After") == "" {
			t.Fatalf("bob's right password during his lockout: %d", st)
		}
		if st, _, _ := n.login("carol", userPassword); st != 200 {
			t.Fatalf("carol's right password after bob's failures from the same address: %d, want 200", st)
		}
		if st, _ := n.ccToken(n.Init.ClientID, n.Init.ClientSecret); st != 200 {
			t.Fatalf("the admin after failed logins from the same address: %d, want 200", st)
		}

		// MFA codes: dave's second step is locked, the others are not.
		for i := 0; i < 8; i++ {
			st, _, _ := n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": mfaTok, "code": "000000"})
			if st != 401 && st != 429 {
				t.Fatalf("wrong MFA code %d: %d", i, st)
			}
		}
		if st, _, _ := n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": mfaTok, "code": "000000"}); st != 429 {
			t.Fatalf("MFA step after eight wrong codes: %d, want 429", st)
		}
		if st, _, _ := n.login("carol", userPassword); st != 200 {
			t.Fatalf("carol after dave's MFA failures: %d, want 200", st)
		}
		if st, _ := n.ccToken(n.Init.ClientID, n.Init.ClientSecret); st != 200 {
			t.Fatalf("the admin after MFA failures from the same address: %d, want 200", st)
		}
	})
}

// TestAddressSprayBudget: an address that fails across many accounts is
// locked for unknown and failing accounts once it spends its spray budget,
// while an account that is not under attack still signs in from it.
func TestAddressSprayBudget(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		n.Env = append(n.Env, "COFFER_AUTH_LOCKOUT_ADDRESS_MAX_FAILURES=6")
		n.Restart()
		n.newUser("erin")
		failing, failingSecret := n.newServiceClient("failing")
		if st, _ := n.ccToken(failing, "cs_wrong"); st != 401 {
			t.Fatalf("first wrong secret: %d", st)
		}
		// Spray: one guess each at many accounts, none repeated; with the
		// failure above, six failures spend the address's budget.
		for i := 0; i < 5; i++ {
			if st, _ := n.ccToken("cl_unknown"+strconv.Itoa(i), "cs_guess"); st != 401 {
				t.Fatalf("spray %d: %d", i, st)
			}
		}
		if st, ra := n.ccToken("cl_unknownlast", "cs_guess"); st != 429 || ra == "" {
			t.Fatalf("an unknown account from a spraying address: %d %q, want 429 with Retry-After", st, ra)
		}
		if st, _, _ := n.login("nobody", "some password 123"); st != 429 {
			t.Fatalf("an unknown user from a spraying address: %d, want 429", st)
		}
		if st, _ := n.ccToken(failing, failingSecret); st != 429 {
			t.Fatalf("a failing account's right secret from a spraying address: %d, want 429", st)
		}
		// Never refused: a right credential of an account not under attack.
		if st, _ := n.ccToken(n.Init.ClientID, n.Init.ClientSecret); st != 200 {
			t.Fatalf("the admin from a spraying address: %d, want 200", st)
		}
		if st, _, _ := n.login("erin", userPassword); st != 200 {
			t.Fatalf("erin from a spraying address: %d, want 200", st)
		}
		// A wrong guess at a fresh account from there does not tell 401
		// from 429: every failure under the address lock is 429.
		if st, _, _ := n.login("erin", "not erin's password"); st != 429 {
			t.Fatalf("a wrong password from a spraying address: %d, want 429", st)
		}
	})
}

// TestLockoutAcrossNodes: two servers on one PostgreSQL database agree on
// lockouts: an account attacked through one node is locked on the other,
// and neither refuses another account.
func TestLockoutAcrossNodes(t *testing.T) {
	a := start(t, storetest.Backends()[1])
	b := a.second()
	victimID, victimSecret := a.newServiceClient("victim")
	for i := 0; i < 8; i++ {
		via := a
		if i%2 == 1 {
			via = b
		}
		if st, _ := via.ccToken(victimID, "cs_wrong"); st != 401 && st != 429 {
			t.Fatalf("wrong secret %d: %d", i, st)
		}
	}
	for _, x := range []*node{a, b} {
		if st, _ := x.ccToken(victimID, victimSecret); st != 429 {
			t.Fatalf("the attacked client on %s: %d, want 429", x.Addr, st)
		}
		if st, _ := x.ccToken(a.Init.ClientID, a.Init.ClientSecret); st != 200 {
			t.Fatalf("the admin on %s: %d, want 200", x.Addr, st)
		}
	}
	// Concurrent attempts on both nodes: no more than the budget (5) is
	// ever verified, however they interleave.
	other, _ := a.newServiceClient("other")
	var wg sync.WaitGroup
	var mu sync.Mutex
	refusedAs401 := 0
	for i := 0; i < 24; i++ {
		via := a
		if i%2 == 1 {
			via = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _ := via.ccToken(other, "cs_wrong")
			mu.Lock()
			defer mu.Unlock()
			if st == 401 {
				refusedAs401++
			} else if st != 429 {
				t.Errorf("concurrent wrong secret: %d", st)
			}
		}()
	}
	wg.Wait()
	if refusedAs401 > 5 {
		t.Fatalf("%d of 24 concurrent guesses across two nodes were checked; the budget is 5", refusedAs401)
	}
}

// second serves the same deployment (data directory and database) as a
// second node on another port.
func (n *node) second() *node {
	n.t.Helper()
	m := &node{Server: n.Peer("COFFER_NODE=second-node"), t: n.t}
	m.Serve("127.0.0.1:0")
	return m
}

// TestMFATokenSingleUse: an mfa_token completes one login; a second right
// code (TOTP or recovery) with the same token is refused (#15.8).
func TestMFATokenSingleUse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		n.newUser("frank")
		_, _, tr := n.login("frank", userPassword)
		secret, codes := n.enrolTOTP(tr.AccessToken, nil)
		_, _, tr = n.login("frank", userPassword)
		code, err := totp.GenerateCode(secret, time.Now().Add(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if st, _, b := n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": tr.MFAToken, "code": code}); st != 200 {
			t.Fatalf("first completion: %d %s", st, b)
		}
		if st, _, b := n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": tr.MFAToken, "code": codes[0]}); st != 401 {
			t.Fatalf("the same mfa_token completed a second login: %d %s", st, b)
		}
		// The recovery code was not spent by the refused attempt.
		_, _, tr = n.login("frank", userPassword)
		if st, _, b := n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": tr.MFAToken, "code": codes[0]}); st != 200 {
			t.Fatalf("recovery code with a fresh mfa_token: %d %s", st, b)
		}
	})
}

const mfaPolicy = accessPolicy + `  helpdesk:
    - resources: ["users"]
      actions: [update]
`

// TestRequireMFAEnrolment: a user whose roles require MFA cannot enrol a
// second factor with the password alone; an admin's one-time enrolment
// code lets the real user enrol; an admin (with a fresh sign-in and the
// right to grant the user's roles) resets a user's MFA (#15.7).
func TestRequireMFAEnrolment(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.PutPolicy(ctx, []byte(mfaPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		secID := n.newUser("sec", "secadmin")
		plainID := n.newUser("plain", "support")

		// The attacker has sec's password only.
		_, _, tr := n.login("sec", userPassword)
		if st, _, b := n.postJSON("/v1/auth/mfa/totp", tr.AccessToken, map[string]any{}); st != 403 {
			t.Fatalf("enrolment of a require_mfa user with the password alone: %d %s", st, b)
		}
		if st, _, _ := n.postJSON("/v1/auth/mfa/totp", tr.AccessToken, map[string]any{"enrolment_code": "mfa_guess"}); st != 403 {
			t.Fatalf("enrolment with a made-up code: %d", st)
		}
		// A user whose roles need no MFA still enrols by themselves.
		_, _, ptr := n.login("plain", userPassword)
		n.enrolTOTP(ptr.AccessToken, nil)

		// The admin issues a code; it is shown once and works once.
		admTok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		st, _, b := n.postJSON("/v1/users/"+secID+"/mfa/enrolment-code", admTok, nil)
		var ec struct {
			Code      string    `json:"enrolment_code"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		mustJSON(t, b, &ec)
		if st != 201 || !strings.HasPrefix(ec.Code, "mfa_") || !ec.ExpiresAt.After(time.Now()) {
			t.Fatalf("issue enrolment code: %d %s", st, b)
		}
		secret, _ := n.enrolTOTP(tr.AccessToken, map[string]any{"enrolment_code": ec.Code})
		_, _, tr = n.login("sec", userPassword)
		code, _ := totp.GenerateCode(secret, time.Now().Add(30*time.Second))
		st, _, b = n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": tr.MFAToken, "code": code})
		var fin tokenResp
		mustJSON(t, b, &fin)
		if st != 200 {
			t.Fatalf("MFA login after enrolment: %d %s", st, b)
		}
		if st, _, _ := n.do("GET", "/v1/collections", fin.AccessToken, "", nil); st != 200 {
			t.Fatalf("the require_mfa role with MFA: %d", st)
		}

		// Who may reset whose MFA: a helpdesk may reset a user whose roles
		// it may grant, never a more privileged one.
		hdID, hdSecret := n.newServiceClient("helpdesk", "helpdesk", "support")
		hdTok := n.Token(hdID, hdSecret)
		if st, _, b := n.do("DELETE", "/v1/users/"+secID+"/mfa", hdTok, "", nil); st != 403 {
			t.Fatalf("helpdesk resets a secadmin's MFA: %d %s", st, b)
		}
		if st, _, b := n.postJSON("/v1/users/"+secID+"/mfa/enrolment-code", hdTok, nil); st != 403 {
			t.Fatalf("helpdesk issues a secadmin's enrolment code: %d %s", st, b)
		}
		if st, _, b := n.do("DELETE", "/v1/users/"+plainID+"/mfa", hdTok, "", nil); st != 204 {
			t.Fatalf("helpdesk resets a support user's MFA: %d %s", st, b)
		}
		if st, _, b := n.do("DELETE", "/v1/users/u_unknown/mfa", admTok, "", nil); st != 404 {
			t.Fatalf("reset of an unknown user: %d %s", st, b)
		}

		// The admin resets sec: login needs no code again, the role is out
		// of force, and enrolment needs a new code.
		if st, _, b := n.do("DELETE", "/v1/users/"+secID+"/mfa", admTok, "", nil); st != 204 {
			t.Fatalf("admin resets MFA: %d %s", st, b)
		}
		_, _, tr = n.login("sec", userPassword)
		if tr.MFARequired || tr.AccessToken == "" {
			t.Fatalf("login after reset: %+v", tr)
		}
		if st, _, _ := n.do("GET", "/v1/collections", tr.AccessToken, "", nil); st != 403 {
			t.Fatalf("the require_mfa role after reset: %d", st)
		}
		if st, _, _ := n.postJSON("/v1/auth/mfa/totp", tr.AccessToken, map[string]any{"enrolment_code": ec.Code}); st != 403 {
			t.Fatalf("a used enrolment code enrols again: %d", st)
		}
	})
}

// TestUsernames: usernames that differ by case, width, surrounding space
// or look-alike letters are one account; mixing scripts is refused; users
// made before normalisation stay reachable (#15.10).
func TestUsernames(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		create := func(name string) int {
			st, _, _ := n.postJSON("/v1/users", tok, map[string]any{"username": name, "password": userPassword})
			return st
		}
		if st := create("alice"); st != 201 {
			t.Fatalf("alice: %d", st)
		}
		for _, name := range []string{"Alice", "alice ", " ALICE", "ａｌｉｃｅ"} {
			if st := create(name); st != 409 {
				t.Errorf("%q beside alice: %d, want 409", name, st)
			}
		}
		if st := create("аlice"); st != 422 { // Cyrillic а
			t.Errorf("Cyrillic-Latin mix: %d, want 422", st)
		}
		if st := create("ace"); st != 201 {
			t.Fatalf("ace: %d", st)
		}
		if st := create("асе"); st != 409 { // all Cyrillic, looks like ace
			t.Errorf("whole-script look-alike of ace: %d, want 409", st)
		}
		for _, name := range []string{"alice", "Alice", "ALICE ", "ａｌｉｃｅ"} {
			if st, _, _ := n.login(name, userPassword); st != 200 {
				t.Errorf("login as %q: %d", name, st)
			}
		}
		// One budget for all spellings: 5 failures across them lock alice.
		for i, name := range []string{"alice", "Alice", "ALICE", "alice ", "Alice "} {
			if st, _, _ := n.login(name, "wrong password "+strconv.Itoa(i)); st != 401 {
				t.Fatalf("failure %d as %q: %d", i, name, st)
			}
		}
		if st, _, _ := n.login("aLiCe", userPassword); st != 429 {
			t.Fatalf("alice after five failures under other spellings: %d, want 429", st)
		}

		// Users made before normalisation: a look-alike pair stays two
		// reachable accounts, each by its exact name.
		n.Stop()
		db := n.openStore()
		hash, err := auth.HashPassword(rand.Reader, secret.NewPassword(userPassword))
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		for i, name := range []string{"Carol", "carol", "dan the man"} {
			u := coffer.User{ID: "u_legacy" + strconv.Itoa(i), Username: name, PasswordHash: hash, Roles: []string{},
				CreatedAt: old.Add(time.Duration(i) * time.Second)}
			if err := db.CreateUser(context.Background(), u); err != nil {
				t.Fatal(err)
			}
		}
		n.Restart()
		for name, want := range map[string]string{"Carol": "u_legacy0", "carol": "u_legacy1", "CAROL": "u_legacy0",
			"dan the man": "u_legacy2", "Dan  The Man": "u_legacy2"} {
			st, _, b := n.postJSON("/v1/auth/login", "", map[string]string{"username": name, "password": userPassword})
			var tr tokenResp
			mustJSON(t, b, &tr)
			if st != 200 {
				t.Errorf("legacy login as %q: %d %s", name, st, b)
				continue
			}
			var in struct {
				Sub string `json:"sub"`
			}
			_, _, ib := n.do("POST", "/v1/oauth/introspect", n.Token(n.Init.ClientID, n.Init.ClientSecret),
				"application/x-www-form-urlencoded", strings.NewReader("token="+tr.AccessToken))
			mustJSON(t, ib, &in)
			if in.Sub != want {
				t.Errorf("legacy login as %q signed in %s, want %s", name, in.Sub, want)
			}
		}
	})
}
