package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

const accessPolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  support:
    - resources: ["collections/customers"]
      actions: [read, search]
      fields: {email: masked, card_number: masked, ssn: deny, "*": plain}
  customer:
    - resources: ["collections/customers"]
      actions: [read, update, search]
      when: resource.owner == principal.id
      fields: {"*": plain}
  provisioner:
    - resources: ["clients"]
      actions: [create]
  secadmin:
    require_mfa: true
    rules:
      - resources: ["*"]
        actions: ["*"]
`

// TestFieldViewsAndOwnership: a support role sees emails masked and no SSN;
// a customer reads and updates only what it owns (others: 404).
func TestFieldViewsAndOwnership(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		if err := n.Admin.PutPolicy(ctx, []byte(accessPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		sup, err := n.Admin.CreateClient(ctx, "support-desk", []string{"support"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		alice, _ := n.Admin.CreateClient(ctx, "alice-app", []string{"customer"}, nil)
		bob, _ := n.Admin.CreateClient(ctx, "bob-app", []string{"customer"}, nil)
		aliceRec, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: alice.ClientID,
			Data: map[string]any{"name": "Alice", "email": "alice@example.com", "card_number": "4111111111111111", "ssn": "123-45-6789"}})
		if err != nil {
			t.Fatal(err)
		}
		bobRec, _ := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: bob.ClientID,
			Data: map[string]any{"name": "Bob", "email": "bob@example.com"}})

		sc := n.Client(sup.ClientID, sup.ClientSecret)
		r, err := sc.GetRecord(ctx, "customers", aliceRec)
		if err != nil {
			t.Fatal(err)
		}
		if r.Data["email"] != "a****@e******.com" || r.Data["card_number"] != "************1111" || r.Data["name"] != "Alice" {
			t.Fatalf("support view: %v", r.Data)
		}
		if _, ok := r.Data["ssn"]; ok {
			t.Fatalf("support sees the SSN: %v", r.Data)
		}
		// Support may not search by the email it sees masked (one hit or
		// none would confirm a guess), only by what it sees in plain.
		if _, err := sc.Search(ctx, "customers", map[string]any{"email": "alice@example.com"}, 5); client.StatusCode(err) != 403 {
			t.Fatalf("support search by a masked field: %v, want 403", err)
		}
		if err := sc.UpdateRecord(ctx, "customers", aliceRec, map[string]any{"name": "X"}); client.StatusCode(err) != 403 {
			t.Fatalf("support update: %v", err)
		}

		ac := n.Client(alice.ClientID, alice.ClientSecret)
		if r, err := ac.GetRecord(ctx, "customers", aliceRec); err != nil || r.Data["ssn"] != "123-45-6789" {
			t.Fatalf("alice reads her own: %v %+v", err, r)
		}
		if _, err := ac.GetRecord(ctx, "customers", bobRec); client.StatusCode(err) != 404 {
			t.Fatalf("alice reads bob's: %v (want 404)", err)
		}
		if err := ac.UpdateRecord(ctx, "customers", bobRec, map[string]any{"name": "pwned"}); client.StatusCode(err) != 404 {
			t.Fatalf("alice updates bob's: %v (want 404)", err)
		}
		if err := ac.UpdateRecord(ctx, "customers", aliceRec, map[string]any{"name": "Alice L."}); err != nil {
			t.Fatalf("alice updates hers: %v", err)
		}
		if hits, err := ac.Search(ctx, "customers", map[string]any{"email": "bob@example.com"}, 5); err != nil || len(hits) != 0 {
			t.Fatalf("alice finds bob's record by search: %v %+v", err, hits)
		}
		if _, err := ac.CreateRecord(ctx, "customers", client.NewRecord{Owner: bob.ClientID, Data: map[string]any{"name": "forged"}}); client.StatusCode(err) != 403 {
			t.Fatalf("alice creates a record owned by bob: %v", err)
		}
		if r, _ := n.Admin.GetRecord(ctx, "customers", bobRec); r == nil || r.Data["name"] != "Bob" {
			t.Fatalf("bob's record changed: %+v", r)
		}
	})
}

// TestNoSelfMintedAdmin: a client allowed to create clients cannot give
// them a role it does not hold.
func TestNoSelfMintedAdmin(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	ctx := context.Background()
	if err := n.Admin.PutPolicy(ctx, []byte(accessPolicy), "yaml"); err != nil {
		t.Fatal(err)
	}
	pc, err := n.Admin.CreateClient(ctx, "provisioner", []string{"provisioner"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	prov := n.Client(pc.ClientID, pc.ClientSecret)
	if _, err := prov.CreateClient(ctx, "evil", []string{"admin"}, nil); client.StatusCode(err) != 403 {
		t.Fatalf("provisioner mints an admin: %v", err)
	}
	if _, err := prov.CreateClient(ctx, "helper", []string{"provisioner"}, nil); err != nil {
		t.Fatalf("provisioner creates a client with its own role: %v", err)
	}
	if err := prov.PutPolicy(ctx, []byte(`roles: {provisioner: [{resources: ["*"], actions: ["*"]}]}`), "yaml"); client.StatusCode(err) != 403 {
		t.Fatalf("provisioner rewrites the policy: %v", err)
	}
}

type tokenResp struct {
	AccessToken string `json:"access_token"`
	MFARequired bool   `json:"mfa_required"`
	MFAToken    string `json:"mfa_token"`
}

func (n *node) postJSON(path, token string, body any) (int, http.Header, []byte) {
	n.t.Helper()
	b, _ := json.Marshal(body)
	return n.do("POST", path, token, "application/json", strings.NewReader(string(b)))
}

// TestMFA: a role marked require_mfa grants nothing until the user proves
// TOTP; a code cannot be replayed; MFA tokens carry amr otp.
func TestMFA(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.PutPolicy(ctx, []byte(accessPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		admTok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		const pw = "correct horse battery staple 42"
		if st, _, b := n.postJSON("/v1/users", admTok, map[string]any{"username": "sec", "password": "password1234", "roles": []string{"secadmin"}}); st != 422 {
			t.Fatalf("common password accepted: %d %s", st, b)
		}
		st, _, b := n.postJSON("/v1/users", admTok, map[string]any{"username": "sec", "password": pw, "roles": []string{"secadmin"}})
		if st != 201 {
			t.Fatalf("create user: %d %s", st, b)
		}
		var created struct {
			ID string `json:"id"`
		}
		mustJSON(t, b, &created)
		// secadmin requires MFA: enrolment needs an admin's one-time code.
		st, _, b = n.postJSON("/v1/users/"+created.ID+"/mfa/enrolment-code", admTok, nil)
		var ec struct {
			Code string `json:"enrolment_code"`
		}
		mustJSON(t, b, &ec)
		if st != 201 || ec.Code == "" {
			t.Fatalf("enrolment code: %d %s", st, b)
		}
		st, _, b = n.postJSON("/v1/auth/login", "", map[string]string{"username": "sec", "password": pw})
		var tr tokenResp
		mustJSON(t, b, &tr)
		if st != 200 || tr.AccessToken == "" {
			t.Fatalf("login: %d %s", st, b)
		}
		// Without MFA the require_mfa role grants nothing.
		if st, _, b := n.do("GET", "/v1/collections", tr.AccessToken, "", nil); st != 403 {
			t.Fatalf("require_mfa role without MFA: %d %s", st, b)
		}
		// Enrol TOTP.
		st, _, b = n.postJSON("/v1/auth/mfa/totp", tr.AccessToken, map[string]any{"enrolment_code": ec.Code})
		var en struct {
			Secret        string   `json:"secret"`
			OTPAuthURL    string   `json:"otpauth_url"`
			RecoveryCodes []string `json:"recovery_codes"`
		}
		mustJSON(t, b, &en)
		if st != 200 || en.Secret == "" || !strings.HasPrefix(en.OTPAuthURL, "otpauth://totp/") || len(en.RecoveryCodes) == 0 {
			t.Fatalf("enrol: %d %s", st, b)
		}
		code, err := totp.GenerateCode(en.Secret, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if st, _, b := n.postJSON("/v1/auth/mfa/totp/confirm", tr.AccessToken, map[string]string{"code": code}); st != 204 {
			t.Fatalf("confirm: %d %s", st, b)
		}
		// Login now asks for the second factor.
		st, _, b = n.postJSON("/v1/auth/login", "", map[string]string{"username": "sec", "password": pw})
		tr = tokenResp{}
		mustJSON(t, b, &tr)
		if st != 200 || !tr.MFARequired || tr.MFAToken == "" || tr.AccessToken != "" {
			t.Fatalf("login with MFA: %d %s", st, b)
		}
		// The code used to confirm cannot be replayed.
		if st, _, _ := n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": tr.MFAToken, "code": code}); st != 401 {
			t.Fatalf("replayed TOTP code: %d", st)
		}
		// A recovery code works once.
		st, _, b = n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": tr.MFAToken, "code": en.RecoveryCodes[0]})
		var fin tokenResp
		mustJSON(t, b, &fin)
		if st != 200 || fin.AccessToken == "" {
			t.Fatalf("mfa with recovery code: %d %s", st, b)
		}
		// (with a fresh mfa_token: the used one is refused anyway)
		st, _, b = n.postJSON("/v1/auth/login", "", map[string]string{"username": "sec", "password": pw})
		tr = tokenResp{}
		mustJSON(t, b, &tr)
		if st != 200 || tr.MFAToken == "" {
			t.Fatalf("login again: %d %s", st, b)
		}
		if st, _, _ := n.postJSON("/v1/auth/mfa", "", map[string]string{"mfa_token": tr.MFAToken, "code": en.RecoveryCodes[0]}); st != 401 {
			t.Fatalf("recovery code reused: %d", st)
		}
		if st, _, b := n.do("GET", "/v1/collections", fin.AccessToken, "", nil); st != 200 {
			t.Fatalf("MFA token refused: %d %s", st, b)
		}
		// The token says how it was obtained.
		st, _, b = n.do("POST", "/v1/oauth/introspect", admTok, "application/x-www-form-urlencoded",
			strings.NewReader(url.Values{"token": {fin.AccessToken}}.Encode()))
		if st != 200 || !strings.Contains(string(b), `"active":true`) {
			t.Fatalf("introspect: %d %s", st, b)
		}
	})
}

// TestLockout: repeated bad client secrets lock the client out with 429
// and Retry-After; a right secret during the lockout is refused too.
func TestLockout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		bad := url.Values{"grant_type": {"client_credentials"}, "client_id": {n.Init.ClientID}, "client_secret": {"cs_wrong"}}
		var st int
		var h http.Header
		for i := 0; i < 8; i++ {
			st, h, _ = n.do("POST", "/v1/oauth/token", "", "application/x-www-form-urlencoded", strings.NewReader(bad.Encode()))
			if st == 429 {
				break
			}
			if st != 401 {
				t.Fatalf("bad secret %d: status %d", i, st)
			}
		}
		if st != 429 || h.Get("Retry-After") == "" {
			t.Fatalf("no lockout after repeated failures: %d %v", st, h)
		}
		good := url.Values{"grant_type": {"client_credentials"}, "client_id": {n.Init.ClientID}, "client_secret": {n.Init.ClientSecret}}
		if st, _, _ := n.do("POST", "/v1/oauth/token", "", "application/x-www-form-urlencoded", strings.NewReader(good.Encode())); st != 429 {
			t.Fatalf("right secret during lockout: %d", st)
		}
	})
}

// TestRevocation: a revoked token is refused at once.
func TestRevocation(t *testing.T) {
	n := start(t, storetest.Backends()[1])
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	if st, _, _ := n.do("GET", "/v1/collections", tok, "", nil); st != 200 {
		t.Fatalf("fresh token: %d", st)
	}
	if st, _, _ := n.do("POST", "/v1/oauth/revoke", "", "application/x-www-form-urlencoded", strings.NewReader("token="+tok)); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	if st, _, _ := n.do("GET", "/v1/collections", tok, "", nil); st != 401 {
		t.Fatalf("revoked token accepted: %d", st)
	}
}

// TestMTLS: a client certificate from Coffer's CA authenticates its client
// without a bearer token.
func TestMTLS(t *testing.T) {
	n := start(t, storetest.Backends()[0], "COFFER_TLS_CLIENT_CERTS=true")
	ctx := context.Background()
	if err := n.Admin.PutPolicy(ctx, []byte(accessPolicy), "yaml"); err != nil {
		t.Fatal(err)
	}
	svc, err := n.Admin.CreateClient(ctx, "billing", []string{"support"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(n.Dir, n.Env)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := app.IssueClientCert(ctx, cfg, svc.ClientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := client.New(n.URL, client.WithCAFile(n.Init.CACert), client.WithClientCertificate(pair))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.GetCollection(ctx, "customers"); client.StatusCode(err) != 404 {
		t.Fatalf("mTLS client reading an unknown collection: %v (want 404: authenticated, allowed, missing)", err)
	}
	if err := mc.CreateCollection(ctx, customers); client.StatusCode(err) != 403 {
		t.Fatalf("mTLS client with role support creating a collection: %v (want 403)", err)
	}
	// Without a certificate or token: 401.
	plain, _ := client.New(n.URL, client.WithCAFile(n.Init.CACert))
	if _, err := plain.GetCollection(ctx, "customers"); client.StatusCode(err) != 401 {
		t.Fatalf("no credentials: %v", err)
	}
}

// TestLockoutSettings: auth.lockout from the config sets the schedule:
// after max_failures the next attempt is locked for base.
func TestLockoutSettings(t *testing.T) {
	n := start(t, storetest.Backends()[0], "COFFER_AUTH_LOCKOUT_MAX_FAILURES=2", "COFFER_AUTH_LOCKOUT_BASE=90s", "COFFER_AUTH_LOCKOUT_MAX=10m")
	bad := url.Values{"grant_type": {"client_credentials"}, "client_id": {n.Init.ClientID}, "client_secret": {"cs_wrong"}}
	statuses := []int{}
	var h http.Header
	for i := 0; i < 3; i++ {
		var st int
		st, h, _ = n.do("POST", "/v1/oauth/token", "", "application/x-www-form-urlencoded", strings.NewReader(bad.Encode()))
		statuses = append(statuses, st)
	}
	if statuses[0] != 401 || statuses[2] != 429 {
		t.Fatalf("statuses %v: want a lockout right after max_failures=2", statuses)
	}
	if ra, _ := strconv.Atoi(h.Get("Retry-After")); ra < 60 || ra > 91 {
		t.Fatalf("Retry-After %q: want about base=90s", h.Get("Retry-After"))
	}
}
