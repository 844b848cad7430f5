package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cofferhq/coffer/internal/coffer"
)

// oidcIssuer is a second, in-process OpenID Connect issuer over real
// HTTPS: it serves its discovery document and JWKS and signs tokens.
type oidcIssuer struct {
	t   testing.TB
	srv *httptest.Server

	mu              sync.Mutex
	keys            map[string]testKey // signing keys by kid
	published       []string           // kids in the JWKS
	down            bool
	discoveryIssuer string // issuer in the discovery document (default the real one)
	jwksHits        int
}

type testKey struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
}

func newOIDCIssuer(t testing.TB) *oidcIssuer {
	t.Helper()
	ti := &oidcIssuer{t: t, keys: map[string]testKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		ti.mu.Lock()
		down, iss := ti.down, ti.discoveryIssuer
		ti.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if iss == "" {
			iss = ti.srv.URL
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": ti.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		ti.mu.Lock()
		defer ti.mu.Unlock()
		ti.jwksHits++
		if ti.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		set := jose.JSONWebKeySet{}
		for _, kid := range ti.published {
			k := ti.keys[kid]
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: kid, Algorithm: string(k.alg), Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	ti.srv = httptest.NewUnstartedServer(mux)
	ti.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused TLS handshakes are expected
	ti.srv.StartTLS()
	t.Cleanup(ti.srv.Close)
	return ti
}

func (ti *oidcIssuer) URL() string { return ti.srv.URL }

// addKey makes a key of alg's type under kid; publish puts it in the JWKS.
func (ti *oidcIssuer) addKey(kid string, alg jose.SignatureAlgorithm, publish bool) {
	ti.t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		ti.t.Fatalf("no key type for %s", alg)
	}
	if err != nil {
		ti.t.Fatal(err)
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys[kid] = testKey{priv: priv, alg: alg}
	if publish {
		ti.published = append(ti.published, kid)
	}
}

func (ti *oidcIssuer) publish(kids ...string) {
	ti.mu.Lock()
	ti.published = kids
	ti.mu.Unlock()
}

func (ti *oidcIssuer) setDown(down bool) {
	ti.mu.Lock()
	ti.down = down
	ti.mu.Unlock()
}

func (ti *oidcIssuer) hits() int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.jwksHits
}

func (ti *oidcIssuer) key(kid string) testKey {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	k, ok := ti.keys[kid]
	if !ok {
		ti.t.Fatalf("no key %s", kid)
	}
	return k
}

// sign signs claims with the key kid, under that key's alg.
func (ti *oidcIssuer) sign(kid string, claims map[string]any) string {
	ti.t.Helper()
	k := ti.key(kid)
	return signJWT(ti.t, jose.SigningKey{Algorithm: k.alg, Key: k.priv}, kid, claims)
}

func signJWT(t testing.TB, sk jose.SigningKey, kid string, claims map[string]any) string {
	t.Helper()
	return signTyped(t, sk, kid, "at+jwt", claims)
}

// signTyped is signJWT with a typ header ("" for none).
func signTyped(t testing.TB, sk jose.SigningKey, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(sk, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawJWT builds a compact JWS from a header, claims and signature bytes.
func rawJWT(t testing.TB, header, claims map[string]any, sig []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(c) + "." + enc(sig)
}

var extEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// claims returns valid claims for ti, with over applied (a nil value
// removes the claim).
func (ti *oidcIssuer) claims(over map[string]any) map[string]any {
	now := extEpoch.Unix()
	c := map[string]any{
		"iss": ti.URL(), "aud": []string{"other", "coffer-api"}, "sub": "user-42",
		"exp": now + 300, "iat": now - 10, "nbf": now - 10, "jti": "tok-1",
		"roles": []string{"vault-admins", "not-mapped", "auditors", "vault-admins"},
		"email": "a@example.com", "name": "A\nB",
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

type extFixture struct {
	idp   *oidcIssuer
	clock *clock
	ext   *External
	cfg   ExternalConfig
}

func (ti *oidcIssuer) config() ExternalConfig {
	return ExternalConfig{
		Issuer: ti.URL(), Audience: "coffer-api",
		RoleMap:         map[string]string{"vault-admins": "admin", "auditors": "auditor"},
		AttributeClaims: []string{"email", "name", "missing"},
		MFAACRValues:    []string{"urn:example:gold"},
	}
}

// newExtFixture starts an issuer with an RS256 key "rsa-1" and an ES256
// key "ec-1" and an External trusting it through the server's client.
func newExtFixture(t testing.TB, tune func(*ExternalConfig)) *extFixture {
	t.Helper()
	idp := newOIDCIssuer(t)
	idp.addKey("rsa-1", jose.RS256, true)
	idp.addKey("ec-1", jose.ES256, true)
	f := &extFixture{idp: idp, clock: newClock(extEpoch), cfg: idp.config()}
	if tune != nil {
		tune(&f.cfg)
	}
	ext, err := NewExternal(context.Background(), []ExternalConfig{f.cfg}, ExternalOptions{
		HTTPClient: idp.srv.Client(), Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ext.Close)
	f.ext = ext
	return f
}

func TestExternalVerifyAccepts(t *testing.T) {
	f := newExtFixture(t, func(c *ExternalConfig) { c.AllowMissingJTI = true })
	host := strings.TrimPrefix(f.idp.URL(), "https://")
	tests := []struct {
		name string
		kid  string
		over map[string]any
		want coffer.Principal
	}{
		{"ok/rs256 mapped roles, unmapped dropped", "rsa-1", nil, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{"admin", "auditor"},
			Attributes: map[string]string{"email": "a@example.com"}, TokenID: "ext:" + host + ":tok-1",
		}},
		{"ok/es256 with aud as a string", "ec-1", map[string]any{"aud": "coffer-api", "roles": []string{"auditors"}}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{"auditor"},
			Attributes: map[string]string{"email": "a@example.com"}, TokenID: "ext:" + host + ":tok-1",
		}},
		{"ok/roles as a space-separated string", "rsa-1", map[string]any{"roles": "auditors nobody vault-admins", "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{"auditor", "admin"},
		}},
		{"ok/roles as a single string", "rsa-1", map[string]any{"roles": "auditors", "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{"auditor"},
		}},
		{"ok/no roles claim gives no roles", "rsa-1", map[string]any{"roles": nil, "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{},
		}},
		{"ok/roles claim of another type gives no roles", "rsa-1", map[string]any{"roles": map[string]any{"vault-admins": true}, "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{},
		}},
		{"ok/mfa from amr", "rsa-1", map[string]any{"amr": []string{"pwd", "hwk"}, "roles": nil, "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{}, MFA: true,
		}},
		{"ok/mfa from a configured acr", "rsa-1", map[string]any{"acr": "urn:example:gold", "roles": nil, "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{}, MFA: true,
		}},
		{"ok/no mfa from another acr or amr", "rsa-1", map[string]any{"acr": "urn:example:bronze", "amr": []string{"pwd"}, "roles": nil, "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{},
		}},
		{"ok/expired within leeway", "rsa-1", map[string]any{"exp": extEpoch.Unix() - 20, "roles": nil, "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{},
		}},
		{"ok/without nbf and iat", "rsa-1", map[string]any{"nbf": nil, "iat": nil, "roles": nil, "jti": nil, "email": nil}, coffer.Principal{
			ID: "ext:" + host + ":user-42", Kind: coffer.KindExternal, Roles: []string{},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.idp.claims(tt.over)
			p, err := f.ext.Verify(context.Background(), f.idp.sign(tt.kid, c))
			if err != nil {
				t.Fatal(err)
			}
			tt.want.TokenExpiry = time.Unix(int64(c["exp"].(int64)), 0)
			if !p.TokenExpiry.Equal(tt.want.TokenExpiry) {
				t.Errorf("expiry = %v, want %v", p.TokenExpiry, tt.want.TokenExpiry)
			}
			p.TokenExpiry = tt.want.TokenExpiry
			if _, has := c["jti"]; !has {
				// Without a jti, revoked by the token's hash.
				if h := strings.TrimPrefix(p.TokenID, "ext:"+host+":sha256:"); len(h) != 64 || h == p.TokenID {
					t.Errorf("token id without jti = %q, want the prefix and sha256:HEX", p.TokenID)
				}
				tt.want.TokenID = p.TokenID
			}
			if iat, ok := c["iat"].(int64); ok && !p.AuthTime.Equal(time.Unix(iat, 0)) {
				t.Errorf("auth time = %v, want iat %v", p.AuthTime, time.Unix(iat, 0))
			}
			p.AuthTime = time.Time{}
			if !reflect.DeepEqual(*p, tt.want) {
				t.Errorf("principal = %+v\nwant        %+v", *p, tt.want)
			}
		})
	}
}

func TestExternalRolesClaimOptions(t *testing.T) {
	tests := []struct {
		name   string
		claim  string
		claims map[string]any
		want   []string
	}{
		{"ok/nested path", "realm_access.roles", map[string]any{"realm_access": map[string]any{"roles": []string{"vault-admins"}}}, []string{"admin"}},
		{"ok/literal name with dots wins", "https://example.com/roles", map[string]any{"https://example.com/roles": []string{"auditors"}}, []string{"auditor"}},
		{"ok/groups claim", "groups", map[string]any{"groups": []any{"auditors", 7, nil, "vault-admins"}, "roles": []string{"ignored"}}, []string{"auditor", "admin"}},
		{"ok/nested path through a non-object", "realm_access.roles", map[string]any{"realm_access": "vault-admins"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newExtFixture(t, func(c *ExternalConfig) { c.RolesClaim = tt.claim })
			over := map[string]any{"roles": nil}
			for k, v := range tt.claims {
				over[k] = v
			}
			p, err := f.ext.Verify(context.Background(), f.idp.sign("rsa-1", f.idp.claims(over)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Roles, tt.want) {
				t.Errorf("roles = %q, want %q", p.Roles, tt.want)
			}
		})
	}
}

func TestExternalVerifyRefuses(t *testing.T) {
	f := newExtFixture(t, nil)
	now := extEpoch.Unix()

	// A second issuer that serves a perfectly valid JWKS, but is not trusted.
	rogue := newOIDCIssuer(t)
	rogue.addKey("rsa-1", jose.RS256, true) // even reusing the trusted issuer's kid

	rsaPub := f.idp.key("rsa-1").priv.Public()
	der, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	// Keys the issuer never published.
	strayRSA, _ := rsa.GenerateKey(rand.Reader, 2048)

	valid := f.idp.claims(nil)
	tests := []struct {
		name  string
		token func() string
		why   string
	}{
		{"fail/wrong aud", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"aud": "someone-else"}))
		}, "wrong aud"},
		{"fail/no aud", func() string { return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"aud": nil})) }, "wrong aud"},
		{"fail/iss of an issuer not configured", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"iss": "https://evil.example"}))
		}, "issuer not trusted"},
		{"fail/iss differing by a trailing slash", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"iss": f.idp.URL() + "/"}))
		}, "issuer not trusted"},
		{"fail/no iss", func() string { return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"iss": nil})) }, "malformed JWT"},
		{"fail/expired", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"exp": now - 31}))
		}, "expired"},
		{"fail/no exp", func() string { return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"exp": nil})) }, "exp missing"},
		{"fail/not yet valid", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"nbf": now + 31}))
		}, "not yet valid"},
		{"fail/issued in the future", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"iat": now + 31}))
		}, "issued in the future"},
		{"fail/exp not a number", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"exp": "tomorrow"}))
		}, "malformed exp"},
		{"fail/no sub", func() string { return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"sub": nil})) }, "sub missing"},
		{"fail/sub with a control character", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"sub": "a\nb"}))
		}, "sub missing"},
		{"fail/sub too long", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"sub": strings.Repeat("s", 256)}))
		}, "sub missing"},
		{"fail/amr not a list", func() string {
			return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"amr": "mfa"}))
		}, "malformed amr"},
		{"fail/alg none", func() string {
			return rawJWT(t, map[string]any{"alg": "none", "kid": "rsa-1"}, valid, nil)
		}, "algorithm not allowed"},
		{"fail/HS256 with the RSA public key as secret", func() string {
			return signJWT(t, jose.SigningKey{Algorithm: jose.HS256, Key: rsaPEM}, "rsa-1", valid)
		}, "algorithm not allowed"},
		{"fail/RS384 not in the list", func() string {
			return signJWT(t, jose.SigningKey{Algorithm: jose.RS384, Key: f.idp.key("rsa-1").priv}, "rsa-1", valid)
		}, "algorithm not allowed"},
		{"fail/ES256 header on an RSA kid", func() string {
			ec := f.idp.key("ec-1").priv
			return signJWT(t, jose.SigningKey{Algorithm: jose.ES256, Key: ec}, "rsa-1", valid)
		}, "key does not fit"},
		{"fail/key not in the JWKS under a new kid", func() string {
			return signJWT(t, jose.SigningKey{Algorithm: jose.RS256, Key: strayRSA}, "stray", valid)
		}, "unknown kid"},
		{"fail/key not in the JWKS under a published kid", func() string {
			return signJWT(t, jose.SigningKey{Algorithm: jose.RS256, Key: strayRSA}, "rsa-1", valid)
		}, "bad signature"},
		{"fail/no kid", func() string {
			return signJWT(t, jose.SigningKey{Algorithm: jose.RS256, Key: f.idp.key("rsa-1").priv}, "", valid)
		}, "no kid"},
		{"fail/embedded jwk", func() string {
			k := f.idp.key("rsa-1")
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.priv},
				(&jose.SignerOptions{EmbedJWK: true}).WithHeader("kid", "rsa-1"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(valid)
			jws, _ := s.Sign(b)
			tok, _ := jws.CompactSerialize()
			return tok
		}, "embedded jwk"},
		{"fail/untrusted issuer with a valid JWKS", func() string {
			return rogue.sign("rsa-1", rogue.claims(map[string]any{"aud": "coffer-api"}))
		}, "issuer not trusted"},
		{"fail/untrusted issuer's key claiming the trusted iss", func() string {
			return rogue.sign("rsa-1", f.idp.claims(nil))
		}, "bad signature"},
		{"fail/signature of another token", func() string {
			a := strings.Split(f.idp.sign("rsa-1", valid), ".")
			b := strings.Split(f.idp.sign("rsa-1", f.idp.claims(map[string]any{"sub": "admin"})), ".")
			return a[0] + "." + b[1] + "." + a[2]
		}, "bad signature"},
		{"fail/an ID token (typ JWT)", func() string {
			return signTyped(t, jose.SigningKey{Algorithm: jose.RS256, Key: f.idp.key("rsa-1").priv}, "rsa-1", "JWT", valid)
		}, "typ is not an accepted access-token type"},
		{"fail/no typ", func() string {
			return signTyped(t, jose.SigningKey{Algorithm: jose.RS256, Key: f.idp.key("rsa-1").priv}, "rsa-1", "", valid)
		}, "typ is not an accepted access-token type"},
		{"fail/no jti", func() string { return f.idp.sign("rsa-1", f.idp.claims(map[string]any{"jti": nil})) }, "jti missing"},
		{"fail/not a JWT", func() string { return "not.a.jwt" }, "malformed JWT"},
		{"fail/empty", func() string { return "" }, "empty"},
		{"fail/too long", func() string { return strings.Repeat("a", MaxExternalTokenLen+1) }, "too long"},
		{"fail/json serialisation", func() string { return `{"payload":"x"}` }, "not a compact"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token()
			p, err := f.ext.Verify(context.Background(), tok)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("err = %v, want ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("err = %q, want reason %q", err, tt.why)
			}
			if len(tok) > 20 && strings.Contains(err.Error(), tok[len(tok)-20:]) {
				t.Errorf("error contains the token: %q", err)
			}
		})
	}
}

func TestExternalWeakKeyNeverVerifies(t *testing.T) {
	f := newExtFixture(t, nil)
	// The issuer publishes a 1024-bit RSA key: the set is refetched for the
	// new kid, but the key is skipped.
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	f.idp.mu.Lock()
	f.idp.keys["weak"] = testKey{priv: weak, alg: jose.RS256}
	f.idp.published = append(f.idp.published, "weak")
	f.idp.mu.Unlock()
	f.clock.Add(time.Minute)
	_, err = f.ext.Verify(context.Background(), f.idp.sign("weak", f.idp.claims(nil)))
	if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "unknown kid") {
		t.Errorf("1024-bit RSA key: err = %v, want unknown kid", err)
	}
}

func TestExternalTokenCache(t *testing.T) {
	f := newExtFixture(t, nil)
	ctx := context.Background()
	tok := f.idp.sign("rsa-1", f.idp.claims(nil))
	p, err := f.ext.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the first call's principal, then a cache hit's
		p.Roles[0], p.Attributes["email"] = "owner", "x@evil.example"
		if p, err = f.ext.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if p.Roles[0] != "admin" || p.Attributes["email"] != "a@example.com" {
			t.Errorf("a caller's changes reached the cache: %+v", p)
		}
	}
	if f.ext.cache.len() != 1 {
		t.Errorf("cache entries = %d, want 1", f.ext.cache.len())
	}
	f.clock.Add(300*time.Second + DefaultTokenLeeway)
	if _, err := f.ext.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("cached token past exp+leeway: err = %v", err)
	}
}

func TestExternalKeyRotationWithoutRestart(t *testing.T) {
	f := newExtFixture(t, nil)
	ctx := context.Background()
	if _, err := f.ext.Verify(ctx, f.idp.sign("rsa-1", f.idp.claims(nil))); err != nil {
		t.Fatal(err)
	}
	before := f.idp.hits()

	// The issuer rotates: a new key, the old one withdrawn.
	f.idp.addKey("rsa-2", jose.RS256, false)
	f.idp.publish("rsa-2", "ec-1")
	f.clock.Add(DefaultExternalMinRefetchInterval)

	p, err := f.ext.Verify(ctx, f.idp.sign("rsa-2", f.idp.claims(nil)))
	if err != nil {
		t.Fatalf("token under the new key: %v", err)
	}
	if !p.HasRole("admin") {
		t.Errorf("roles = %q", p.Roles)
	}
	if got := f.idp.hits() - before; got != 1 {
		t.Errorf("JWKS fetches for the new kid = %d, want 1", got)
	}
	// The withdrawn key stops verifying once the new set replaced the old.
	if _, err := f.ext.Verify(ctx, f.idp.sign("rsa-1", f.idp.claims(nil))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token under the withdrawn key: err = %v", err)
	}
}

func TestExternalUnknownKidFetchesAreRateLimited(t *testing.T) {
	f := newExtFixture(t, nil)
	ctx := context.Background()
	stray, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.clock.Add(DefaultExternalMinRefetchInterval)
	before := f.idp.hits()

	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := signJWT(t, jose.SigningKey{Algorithm: jose.ES256, Key: stray}, "made-up-"+string(rune('a'+i%26)), f.idp.claims(nil))
			if _, err := f.ext.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("made-up kid: err = %v", err)
			}
		}()
	}
	wg.Wait()
	if got := f.idp.hits() - before; got != 1 {
		t.Errorf("JWKS fetches for 50 unknown kids = %d, want 1", got)
	}
	// Within the interval a new real key is not fetched yet; after it, it is.
	f.idp.addKey("ec-2", jose.ES256, true)
	tok := f.idp.sign("ec-2", f.idp.claims(nil))
	if _, err := f.ext.Verify(ctx, tok); err == nil {
		t.Error("a fetch ran within the minimum refetch interval")
	}
	f.clock.Add(DefaultExternalMinRefetchInterval)
	if _, err := f.ext.Verify(ctx, tok); err != nil {
		t.Errorf("after the interval: %v", err)
	}
}

func TestExternalIssuerDownKeepsCachedKeys(t *testing.T) {
	f := newExtFixture(t, nil)
	ctx := context.Background()
	f.idp.setDown(true)
	// Old enough for a refresh, which fails: the cached keys still verify.
	f.clock.Add(DefaultExternalRefreshInterval + time.Second)
	tok := func(kid string) string {
		return f.idp.sign(kid, f.idp.claims(map[string]any{"exp": f.clock.Now().Unix() + 60, "iat": f.clock.Now().Unix()}))
	}
	for range 3 {
		if _, err := f.ext.Verify(ctx, tok("rsa-1")); err != nil {
			t.Fatalf("cached RS256 key while the issuer is down: %v", err)
		}
		if _, err := f.ext.Verify(ctx, tok("ec-1")); err != nil {
			t.Fatalf("cached ES256 key while the issuer is down: %v", err)
		}
	}
	f.idp.srv.Close() // now not even a TCP listener
	f.clock.Add(time.Minute)
	if _, err := f.ext.Verify(ctx, tok("rsa-1")); err != nil {
		t.Fatalf("cached key with the issuer gone: %v", err)
	}
	f.idp.addKey("rsa-9", jose.RS256, true)
	_, err := f.ext.Verify(ctx, tok("rsa-9"))
	if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "last key fetch failed") {
		t.Errorf("unknown kid with the issuer down: err = %v", err)
	}
}

func TestExternalStartsWhileIssuerDown(t *testing.T) {
	idp := newOIDCIssuer(t)
	idp.addKey("rsa-1", jose.RS256, true)
	idp.setDown(true)
	clk := newClock(extEpoch)
	ext, err := NewExternal(context.Background(), []ExternalConfig{idp.config()}, ExternalOptions{HTTPClient: idp.srv.Client(), Now: clk.Now})
	if err != nil {
		t.Fatalf("NewExternal with the issuer down: %v", err)
	}
	t.Cleanup(ext.Close)
	tok := idp.sign("rsa-1", idp.claims(nil))
	if _, err := ext.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("verified without keys: %v", err)
	}
	idp.setDown(false)
	clk.Add(DefaultExternalMinRefetchInterval)
	if _, err := ext.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the issuer came back: %v", err)
	}
}

func TestExternalBackgroundRefreshDropsWithdrawnKeys(t *testing.T) {
	f := newExtFixture(t, nil)
	ctx := context.Background()
	f.idp.publish("ec-1") // rsa-1 withdrawn, no new kid
	f.clock.Add(DefaultExternalRefreshInterval)
	// This one is answered from the cache while the refresh starts.
	if _, err := f.ext.Verify(ctx, f.idp.sign("rsa-1", f.idp.claims(map[string]any{"exp": f.clock.Now().Unix() + 60}))); err != nil {
		t.Fatalf("answered from cache: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := f.ext.Verify(ctx, f.idp.sign("rsa-1", f.idp.claims(map[string]any{"exp": f.clock.Now().Unix() + 60})))
		if err != nil {
			if !strings.Contains(err.Error(), "unknown kid") {
				t.Fatalf("err = %v, want unknown kid", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("withdrawn key still verifies after the refresh")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExternalAfterClose(t *testing.T) {
	f := newExtFixture(t, nil)
	ctx := context.Background()
	f.ext.Close()
	before := f.idp.hits()
	if _, err := f.ext.Verify(ctx, f.idp.sign("ec-1", f.idp.claims(nil))); err != nil {
		t.Errorf("cached key after Close: %v", err)
	}
	f.idp.addKey("ec-2", jose.ES256, true)
	f.clock.Add(DefaultExternalRefreshInterval)
	if _, err := f.ext.Verify(ctx, f.idp.sign("ec-2", f.idp.claims(map[string]any{"exp": f.clock.Now().Unix() + 60}))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("unknown kid after Close: err = %v", err)
	}
	if f.idp.hits() != before {
		t.Error("fetched keys after Close")
	}
	f.ext.Close() // twice is fine
}

func TestExternalDiscovery(t *testing.T) {
	t.Run("fail/discovery names another issuer", func(t *testing.T) {
		idp := newOIDCIssuer(t)
		idp.addKey("rsa-1", jose.RS256, true)
		idp.discoveryIssuer = "https://evil.example"
		ext, err := NewExternal(context.Background(), []ExternalConfig{idp.config()}, ExternalOptions{HTTPClient: idp.srv.Client(), Now: newClock(extEpoch).Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ext.Close)
		if _, err := ext.Verify(context.Background(), idp.sign("rsa-1", idp.claims(nil))); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("err = %v", err)
		}
		if idp.hits() != 0 {
			t.Errorf("fetched the JWKS of a mismatched discovery document")
		}
	})
	t.Run("ok/explicit jwks url skips discovery", func(t *testing.T) {
		idp := newOIDCIssuer(t)
		idp.addKey("rsa-1", jose.RS256, true)
		idp.discoveryIssuer = "https://evil.example" // would fail if used
		cfg := idp.config()
		cfg.JWKSURL = idp.URL() + "/keys"
		ext, err := NewExternal(context.Background(), []ExternalConfig{cfg}, ExternalOptions{HTTPClient: idp.srv.Client(), Now: newClock(extEpoch).Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ext.Close)
		if _, err := ext.Verify(context.Background(), idp.sign("rsa-1", idp.claims(nil))); err != nil {
			t.Error(err)
		}
	})
}

func TestExternalTrustRoots(t *testing.T) {
	idp := newOIDCIssuer(t)
	idp.addKey("ec-1", jose.ES256, true)
	tok := idp.sign("ec-1", idp.claims(nil))

	caFile := filepath.Join(t.TempDir(), "idp-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idp.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		caFile string
		ok     bool
	}{
		{"ok/ca file trusts the issuer", caFile, true},
		{"fail/system roots do not know the test CA", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := idp.config()
			cfg.CAFile = tt.caFile
			ext, err := NewExternal(context.Background(), []ExternalConfig{cfg}, ExternalOptions{Now: newClock(extEpoch).Now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ext.Close)
			_, err = ext.Verify(context.Background(), tok)
			if (err == nil) != tt.ok {
				t.Errorf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNewExternalRefusesBadConfig(t *testing.T) {
	good := func() ExternalConfig {
		return ExternalConfig{Issuer: "https://idp.example", Audience: "coffer"}
	}
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfgs func() []ExternalConfig
		want string
	}{
		{"fail/http issuer", func() []ExternalConfig { c := good(); c.Issuer = "http://idp.example"; return []ExternalConfig{c} }, "issuer"},
		{"fail/no audience", func() []ExternalConfig { c := good(); c.Audience = " "; return []ExternalConfig{c} }, "audience"},
		{"fail/http jwks url", func() []ExternalConfig { c := good(); c.JWKSURL = "http://idp.example/k"; return []ExternalConfig{c} }, "jwks url"},
		{"fail/HS256", func() []ExternalConfig {
			c := good()
			c.Algorithms = []string{"RS256", "HS256"}
			return []ExternalConfig{c}
		}, `"HS256" not allowed`},
		{"fail/none", func() []ExternalConfig { c := good(); c.Algorithms = []string{"none"}; return []ExternalConfig{c} }, `"none" not allowed`},
		{"fail/prefix without colon", func() []ExternalConfig { c := good(); c.SubjectPrefix = "cl_"; return []ExternalConfig{c} }, "':'"},
		{"fail/empty role name", func() []ExternalConfig {
			c := good()
			c.RoleMap = map[string]string{"x": ""}
			return []ExternalConfig{c}
		}, "role map"},
		{"fail/missing ca file", func() []ExternalConfig {
			c := good()
			c.CAFile = filepath.Join(dir, "nope.pem")
			return []ExternalConfig{c}
		}, "ca file"},
		{"fail/ca file without certificates", func() []ExternalConfig { c := good(); c.CAFile = notPEM; return []ExternalConfig{c} }, "no PEM certificate"},
		{"fail/duplicate issuer", func() []ExternalConfig {
			b := good()
			b.SubjectPrefix = "other:"
			return []ExternalConfig{good(), b}
		}, "listed twice"},
		{"fail/same host default prefixes", func() []ExternalConfig {
			b := good()
			b.Issuer += "/realms/b"
			return []ExternalConfig{good(), b}
		}, "collides"},
		{"fail/prefix starts another", func() []ExternalConfig {
			a, b := good(), good()
			a.SubjectPrefix, b.Issuer, b.SubjectPrefix = "x:", "https://idp2.example", "x:y:"
			return []ExternalConfig{a, b}
		}, "collides"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ext, err := NewExternal(context.Background(), tt.cfgs(), ExternalOptions{})
			if err == nil {
				ext.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestExternalIssuerRouting(t *testing.T) {
	f := newExtFixture(t, nil)
	tests := []struct {
		name    string
		token   string
		wantIss string
		wantOK  bool
	}{
		{"ok/configured issuer", f.idp.sign("rsa-1", f.idp.claims(nil)), f.idp.URL(), true},
		{"fail/other issuer", f.idp.sign("rsa-1", f.idp.claims(map[string]any{"iss": "https://coffer.example"})), "https://coffer.example", false},
		{"fail/iss not a string", f.idp.sign("rsa-1", f.idp.claims(map[string]any{"iss": 7})), "", false},
		{"fail/garbage", "a.b.c", "", false},
		{"fail/two parts", "a.b", "", false},
		{"fail/empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, ok := f.ext.Issuer(tt.token)
			if iss != tt.wantIss || ok != tt.wantOK {
				t.Errorf("Issuer = %q, %v; want %q, %v", iss, ok, tt.wantIss, tt.wantOK)
			}
		})
	}
	var none *External
	if _, ok := none.Issuer(f.idp.sign("rsa-1", f.idp.claims(nil))); ok {
		t.Error("nil External routes a token")
	}
	if _, err := none.Verify(context.Background(), f.idp.sign("rsa-1", f.idp.claims(nil))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("nil External: err = %v", err)
	}
}

func TestParseExternalJWKS(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	jwk := func(k any, kid, alg, use string) json.RawMessage {
		b, err := json.Marshal(jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: alg, Use: use})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	set := func(keys ...json.RawMessage) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}
	tests := []struct {
		name    string
		body    []byte
		want    []string // kids kept
		wantErr bool
	}{
		{"ok/usable keys kept", set(jwk(&rsaKey.PublicKey, "r", "RS256", "sig"), jwk(&ecKey.PublicKey, "e", "", ""), jwk(edPub, "d", "EdDSA", "sig")), []string{"d", "e", "r"}, false},
		{"ok/private key published by mistake keeps only the public half", set(jwk(rsaKey, "r", "RS256", "sig")), []string{"r"}, false},
		{"ok/unusable keys skipped", set(
			jwk(&rsaKey.PublicKey, "r", "RS256", "sig"),
			jwk([]byte("0123456789abcdef0123456789abcdef"), "oct", "HS256", "sig"),
			jwk(&weak.PublicKey, "weak", "RS256", "sig"),
			jwk(&ecKey.PublicKey, "enc", "", "enc"),
			jwk(&ecKey.PublicKey, "", "ES256", "sig"),
			jwk(&ec384.PublicKey, "p384", "", "sig"),
			jwk(&rsaKey.PublicKey, "rs512", "RS512", "sig"),
			json.RawMessage(`{"kty":"OKP","crv":"Ed448","x":"AAAA","kid":"ed448"}`),
			json.RawMessage(`{"kty":"nope","kid":"nope"}`),
		), []string{"r"}, false},
		{"fail/no usable key", set(jwk(&weak.PublicKey, "weak", "RS256", "sig")), nil, true},
		{"fail/not a set", []byte(`<html>`), nil, true},
		{"fail/too many keys", set(func() []json.RawMessage {
			var ks []json.RawMessage
			for range maxExternalJWKSKeys + 1 {
				ks = append(ks, jwk(&ecKey.PublicKey, "e", "", ""))
			}
			return ks
		}()...), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseExternalJWKS(tt.body, algs)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			var kids []string
			for kid, ks := range got {
				kids = append(kids, kid)
				for _, k := range ks {
					if !k.IsPublic() {
						t.Errorf("kid %s: kept a private key", kid)
					}
				}
			}
			slices.Sort(kids)
			if !reflect.DeepEqual(kids, tt.want) {
				t.Errorf("kids = %q, want %q", kids, tt.want)
			}
		})
	}
}

// FuzzExternalVerify feeds hostile tokens to Verify: it never panics, and
// every refusal wraps ErrInvalidToken.
func FuzzExternalVerify(f *testing.F) {
	fx := newExtFixture(f, nil)
	f.Add(fx.idp.sign("rsa-1", fx.idp.claims(nil)))
	f.Add(fx.idp.sign("ec-1", fx.idp.claims(map[string]any{"roles": "a b"})))
	f.Add(rawJWT(f, map[string]any{"alg": "none"}, fx.idp.claims(nil), nil))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := fx.ext.Verify(context.Background(), tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, not ErrInvalidToken", err)
			}
			return
		}
		if !strings.HasPrefix(p.ID, "ext:") || p.Kind != coffer.KindExternal {
			t.Fatalf("principal = %+v", p)
		}
		for _, r := range p.Roles {
			if r != "admin" && r != "auditor" {
				t.Fatalf("unmapped role %q", r)
			}
		}
	})
}

// FuzzParseExternalJWKS: any body parses or fails without panicking, and
// every key kept is public and fits an allowed algorithm.
func FuzzParseExternalJWKS(f *testing.F) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ecKey.PublicKey, KeyID: "e", Use: "sig"}}})
	f.Add(b)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"x"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}]}`))
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := parseExternalJWKS(body, algs)
		if err != nil {
			return
		}
		for kid, ks := range keys {
			for _, k := range ks {
				if kid == "" || !k.IsPublic() {
					t.Fatalf("kept kid %q public=%v", kid, k.IsPublic())
				}
				fits := false
				for _, a := range algs {
					fits = fits || keyFits(k, a)
				}
				if !fits {
					t.Fatalf("kept kid %q that fits no algorithm", kid)
				}
			}
		}
	})
}

// BenchmarkExternalVerify measures Verify with the issuer's keys cached:
// full verification (signature and claims) with the token cache off, and
// a token presented again with it on.
func BenchmarkExternalVerify(b *testing.B) {
	for _, cached := range []bool{false, true} {
		f := newExtFixture(b, nil)
		f.idp.addKey("ed-1", jose.EdDSA, true)
		size := -1
		if cached {
			size = 0
		}
		ext, err := NewExternal(context.Background(), []ExternalConfig{f.cfg}, ExternalOptions{
			HTTPClient: f.idp.srv.Client(), Now: f.clock.Now, CacheSize: size,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(ext.Close)
		for _, kid := range []string{"rsa-1", "ec-1", "ed-1"} {
			tok := f.idp.sign(kid, f.idp.claims(nil))
			if _, err := ext.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
			name := string(f.idp.key(kid).alg) + "/full"
			if cached {
				name = string(f.idp.key(kid).alg) + "/repeat"
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := ext.Verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
