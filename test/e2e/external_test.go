package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// issuer is a second, in-process OIDC issuer over real HTTPS.
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	kid string
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key, kid: "ext-key-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"}}})
	})
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) caFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "issuer-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw})
	if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// token makes an RFC 9068 access token (typ at+jwt, with a jti).
func (is *issuer) token(t *testing.T, key *rsa.PrivateKey, iss, aud string, roles []string) string {
	t.Helper()
	return is.typed(t, key, "at+jwt", iss, aud, roles, true)
}

// typed makes a token with the given typ header, and a jti or not.
func (is *issuer) typed(t *testing.T, key *rsa.PrivateKey, typ, iss, aud string, roles []string, withJTI bool) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", is.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := jwt.Claims{Issuer: iss, Audience: jwt.Audience{aud}, Subject: "alice",
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute))}
	if withJTI {
		claims.ID = rand.Text()
	}
	tok, err := jwt.Signed(sig).Claims(claims).Claims(map[string]any{"roles": roles}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestExternalIssuer: tokens of a trusted OIDC issuer are accepted with
// mapped roles; forged, foreign-issuer and wrong-audience tokens are 401.
func TestExternalIssuer(t *testing.T) {
	is := newIssuer(t)
	n := start(t, storetest.Backends()[0])
	ctx := context.Background()
	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		t.Fatal(err)
	}
	if err := n.Admin.PutPolicy(ctx, []byte(accessPolicy), "yaml"); err != nil {
		t.Fatal(err)
	}
	id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": "ext@example.com", "ssn": "123-45-6789"}})
	if err != nil {
		t.Fatal(err)
	}
	n.Stop()
	withConfig(t, n.Dir, func(c *config.Config) {
		c.Auth.External = []config.ExternalIssuer{{Issuer: is.srv.URL, Audience: "coffer-ext", CAFile: is.caFile(t),
			RoleMap: map[string]string{"helpdesk": "support"}}}
	})
	n.Serve("127.0.0.1:0")

	good := is.token(t, is.key, is.srv.URL, "coffer-ext", []string{"helpdesk", "root"})
	st, _, b := n.do("GET", "/v1/collections/customers/records/"+id, good, "", nil)
	if st != 200 {
		t.Fatalf("trusted external token: %d %s", st, b)
	}
	var rec client.Record
	mustJSON(t, b, &rec)
	if rec.Data["email"] != "e**@e******.com" || rec.Data["ssn"] != nil {
		t.Fatalf("external principal not shaped as support: %v", rec.Data)
	}
	// The unmapped "root" role gave nothing: no admin rights.
	if st, _, _ := n.do("GET", "/v1/policy", good, "", nil); st != 403 {
		t.Fatalf("unmapped external role granted admin: %d", st)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, tok := range map[string]string{
		"forged signature":  is.token(t, other, is.srv.URL, "coffer-ext", []string{"helpdesk"}),
		"wrong audience":    is.token(t, is.key, is.srv.URL, "someone-else", []string{"helpdesk"}),
		"untrusted issuer":  is.token(t, is.key, "https://evil.example", "coffer-ext", []string{"helpdesk"}),
		"coffer's audience": is.token(t, is.key, is.srv.URL, "coffer", []string{"helpdesk"}),
	} {
		if st, h, _ := n.do("GET", "/v1/collections/customers/records/"+id, tok, "", nil); st != 401 || h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d", name, st)
		}
	}
}

// TestExternalTokenTypeAndJTI: an external issuer's ID token (typ JWT) is
// not an access token, and a token without jti cannot be revoked: both
// are refused unless the issuer's config allows them (token_types,
// allow_missing_jti); an allowed token without jti is revoked by its hash.
// An external token with a jti is revoked by POST /v1/oauth/revoke (#15.10).
func TestExternalTokenTypeAndJTI(t *testing.T) {
	is := newIssuer(t)
	n := start(t, storetest.Backends()[0])
	ctx := context.Background()
	if err := n.Admin.PutPolicy(ctx, []byte(accessPolicy), "yaml"); err != nil {
		t.Fatal(err)
	}
	ext := config.ExternalIssuer{Issuer: is.srv.URL, Audience: "coffer-ext", CAFile: is.caFile(t),
		RoleMap: map[string]string{"helpdesk": "support"}}
	n.Stop()
	withConfig(t, n.Dir, func(c *config.Config) { c.Auth.External = []config.ExternalIssuer{ext} })
	n.Serve("127.0.0.1:0")

	status := func(tok string) int {
		st, _, _ := n.do("GET", "/v1/collections/customers", tok, "", nil)
		return st
	}
	revoke := func(tok string) {
		if st, _, b := n.do("POST", "/v1/oauth/revoke", "", "application/x-www-form-urlencoded", strings.NewReader("token="+tok)); st != 200 {
			t.Fatalf("revoke: %d %s", st, b)
		}
	}
	roles := []string{"helpdesk"}
	at := is.typed(t, is.key, "at+jwt", is.srv.URL, "coffer-ext", roles, true)
	if st := status(at); st != 404 {
		t.Fatalf("an at+jwt access token: %d, want 404 (authenticated, allowed, no such collection)", st)
	}
	if st := status(is.typed(t, is.key, "application/at+jwt", is.srv.URL, "coffer-ext", roles, true)); st != 404 {
		t.Fatalf("an application/at+jwt access token: %d", st)
	}
	for name, tok := range map[string]string{
		"an ID token (typ JWT)": is.typed(t, is.key, "JWT", is.srv.URL, "coffer-ext", roles, true),
		"no typ":                is.typed(t, is.key, "", is.srv.URL, "coffer-ext", roles, true),
		"no jti":                is.typed(t, is.key, "at+jwt", is.srv.URL, "coffer-ext", roles, false),
	} {
		if st := status(tok); st != 401 {
			t.Errorf("%s: %d, want 401", name, st)
		}
	}
	revoke(at)
	if st := status(at); st != 401 {
		t.Fatalf("a revoked external token: %d, want 401", st)
	}

	// The issuer's allowances, for one that cannot type its tokens or
	// leaves out jti.
	n.Stop()
	withConfig(t, n.Dir, func(c *config.Config) {
		c.Auth.External[0].TokenTypes = []string{"at+jwt", "JWT"}
		c.Auth.External[0].AllowMissingJTI = true
	})
	n.Serve("127.0.0.1:0")
	plain := is.typed(t, is.key, "JWT", is.srv.URL, "coffer-ext", roles, false)
	if st := status(plain); st != 404 {
		t.Fatalf("a JWT-typed token without jti, allowed by config: %d", st)
	}
	revoke(plain)
	if st := status(plain); st != 401 {
		t.Fatalf("a revoked token without jti: %d, want 401", st)
	}
	if st := status(is.typed(t, is.key, "JWT", is.srv.URL, "coffer-ext", []string{"helpdesk", "other"}, false)); st != 404 {
		t.Fatalf("another token without jti after a revocation: %d", st)
	}
}
