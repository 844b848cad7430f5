package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cofferhq/coffer/internal/coffer"
)

const (
	testIssuer   = "https://coffer.test"
	testAudience = "coffer"
)

var t0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

type tokenFixture struct {
	tokens *Tokens
	clock  *clock
	key    SigningKey
}

func newFixture(tb testing.TB, cacheSize int) *tokenFixture {
	tb.Helper()
	clk := newClock(t0)
	key, err := GenerateSigningKey(testRand(1), t0)
	if err != nil {
		tb.Fatal(err)
	}
	tk := NewTokens(TokenConfig{
		Issuer: testIssuer, Audience: testAudience, Now: clk.Now, Rand: testRand(2), CacheSize: cacheSize,
	})
	tk.SetKeys(key)
	return &tokenFixture{tokens: tk, clock: clk, key: key}
}

var testClient = coffer.Principal{
	ID: "cl_abc", Kind: coffer.KindClient, Roles: []string{"billing-service", "reader"},
	Attributes: map[string]string{"team": "payments"}, Generation: 3,
}

var testUser = coffer.Principal{ID: "usr_1", Kind: coffer.KindUser, Roles: []string{"support"}, Generation: 1}

func (f *tokenFixture) issue(tb testing.TB, p coffer.Principal, amr ...string) Issued {
	tb.Helper()
	iss, err := f.tokens.Issue(p, "role:x", amr)
	if err != nil {
		tb.Fatal(err)
	}
	return iss
}

// validClaims returns the claims Issue would write for testClient at now.
func validClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "cl_abc", "client_id": "cl_abc",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
		"jti": "aaaaaaaaaaaaaaaaaaaaaa", "roles": []string{"admin"}, "coffer_kind": coffer.KindClient, "coffer_gen": 1,
	}
}

// sign makes a compact JWS of claims with an arbitrary key and algorithm,
// kid and typ (empty: left out): the attacker's toolbox.
func sign(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid, typ string, claims any) string {
	tb.Helper()
	opts := &jose.SignerOptions{}
	if kid != "" {
		opts.WithHeader("kid", kid)
	}
	if typ != "" {
		opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func b64json(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func withClaim(c map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(c))
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestIssueWritesTheRFC9068ProfileClaims(t *testing.T) {
	f := newFixture(t, 0)
	iss, err := f.tokens.Issue(testClient, "role:billing-service role:reader", []string{"client_secret"})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(iss.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	var hdr map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &hdr); err != nil {
		t.Fatal(err)
	}
	wantHdr := map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": f.key.ID}
	if fmt.Sprint(hdr) != fmt.Sprint(wantHdr) {
		t.Errorf("header = %v, want %v", hdr, wantHdr)
	}
	var c map[string]any
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(pb, &c); err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(DefaultTokenTTL)
	checks := []struct {
		claim string
		want  any
	}{
		{"iss", testIssuer}, {"aud", testAudience}, {"sub", "cl_abc"}, {"client_id", "cl_abc"},
		{"iat", float64(t0.Unix())}, {"nbf", float64(t0.Unix())}, {"exp", float64(exp.Unix())},
		{"scope", "role:billing-service role:reader"}, {"coffer_kind", "client"},
		{"roles", []any{"billing-service", "reader"}}, {"coffer_attrs", map[string]any{"team": "payments"}},
		{"amr", []any{"client_secret"}}, {"jti", iss.JTI}, {"coffer_gen", float64(testClient.Generation)},
	}
	for _, ch := range checks {
		if fmt.Sprint(c[ch.claim]) != fmt.Sprint(ch.want) {
			t.Errorf("claim %s = %v, want %v", ch.claim, c[ch.claim], ch.want)
		}
	}
	if len(c) != len(checks) {
		t.Errorf("token has %d claims, want %d: %v", len(c), len(checks), c)
	}
	if len(iss.JTI) != 22 {
		t.Errorf("jti %q is not 128 bits in base64url", iss.JTI)
	}
	if !iss.ExpiresAt.Equal(exp) || iss.Scope != "role:billing-service role:reader" {
		t.Errorf("Issued = %+v", iss)
	}
}

func TestIssueLeavesOutEmptyAttributesAndUsesLoginClientIDForUsers(t *testing.T) {
	f := newFixture(t, 0)
	iss := f.issue(t, testUser, "pwd")
	var c map[string]any
	pb, _ := base64.RawURLEncoding.DecodeString(strings.Split(iss.Token, ".")[1])
	if err := json.Unmarshal(pb, &c); err != nil {
		t.Fatal(err)
	}
	if _, ok := c["coffer_attrs"]; ok {
		t.Error("coffer_attrs present for a principal without attributes")
	}
	if c["client_id"] != DefaultLoginClientID || c["sub"] != "usr_1" || c["coffer_kind"] != "user" {
		t.Errorf("claims = %v", c)
	}
}

func TestIssueRefuses(t *testing.T) {
	f := newFixture(t, 0)
	noKeys := NewTokens(TokenConfig{Issuer: testIssuer, Audience: testAudience, Now: f.clock.Now})
	expiredKey := NewTokens(TokenConfig{Issuer: testIssuer, Audience: testAudience, Now: f.clock.Now})
	k := f.key
	k.NotAfter = t0
	expiredKey.SetKeys(k)
	badKey := NewTokens(TokenConfig{Issuer: testIssuer, Audience: testAudience, Now: f.clock.Now})
	badKey.SetKeys(SigningKey{ID: "x", Private: ed25519.PrivateKey(make([]byte, 10))})
	cases := []struct {
		name    string
		tokens  *Tokens
		p       coffer.Principal
		wantErr error
	}{
		{"fail/no keys set", noKeys, testClient, ErrNoSigningKey},
		{"fail/active key past NotAfter", expiredKey, testClient, ErrNoSigningKey},
		{"fail/malformed active key", badKey, testClient, ErrNoSigningKey},
		{"fail/no principal id", f.tokens, coffer.Principal{Kind: coffer.KindUser}, nil},
		{"fail/external kind", f.tokens, coffer.Principal{ID: "x", Kind: coffer.KindExternal}, nil},
		{"fail/no generation", f.tokens, coffer.Principal{ID: "x", Kind: coffer.KindClient}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tokens.Issue(tc.p, "", nil)
			if err == nil {
				t.Fatal("Issue succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestVerifyReturnsThePrincipal(t *testing.T) {
	f := newFixture(t, 0)
	cases := []struct {
		name    string
		p       coffer.Principal
		amr     []string
		wantMFA bool
	}{
		{"ok/client", testClient, []string{"client_secret"}, false},
		{"ok/user with password only", testUser, []string{"pwd"}, false},
		{"ok/user with password and otp is mfa", testUser, []string{"pwd", "otp"}, true},
		{"ok/user with mfa amr is mfa", testUser, []string{"mfa"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			iss := f.issue(t, tc.p, tc.amr...)
			for _, pass := range []string{"uncached", "cached"} {
				got, err := f.tokens.Verify(iss.Token)
				if err != nil {
					t.Fatalf("%s: %v", pass, err)
				}
				if got.ID != tc.p.ID || got.Kind != tc.p.Kind || !slices.Equal(got.Roles, tc.p.Roles) ||
					fmt.Sprint(got.Attributes) != fmt.Sprint(tc.p.Attributes) || got.MFA != tc.wantMFA ||
					got.TokenID != iss.JTI || !got.TokenExpiry.Equal(iss.ExpiresAt) ||
					got.Generation != tc.p.Generation || got.TokenKeyID != f.key.ID {
					t.Errorf("%s: principal = %+v", pass, got)
				}
			}
		})
	}
}

func TestVerifyCacheHandsOutCopies(t *testing.T) {
	f := newFixture(t, 0)
	iss := f.issue(t, testClient)
	p1, err := f.tokens.Verify(iss.Token)
	if err != nil {
		t.Fatal(err)
	}
	p1.Roles[0] = "admin"
	p1.Attributes["team"] = "root"
	p2, err := f.tokens.Verify(iss.Token)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Roles[0] != "billing-service" || p2.Attributes["team"] != "payments" {
		t.Fatalf("a caller's change reached the cache: %+v", p2)
	}
}

// TestVerifyRefuses is the attack table: every token here must be refused
// with ErrInvalidToken, and the error must not carry the token.
func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t, 0)
	now := f.clock.Now()
	good := f.issue(t, testClient).Token
	parts := strings.Split(good, ".")
	kid := f.key.ID
	pub := f.key.Private.Public().(ed25519.PublicKey)
	ours := f.key.Private
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	vc := validClaims(now)

	// Tampered payload with the old signature: a role escalation.
	var c map[string]any
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(pb, &c)
	c["roles"] = []string{"admin"}
	tampered := parts[0] + "." + b64json(t, c) + "." + parts[2]

	noneHeader := b64json(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid})
	jwe := func() string {
		enc, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.DIRECT, Key: make([]byte, 16), KeyID: kid},
			(&jose.EncrypterOptions{}).WithType("at+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := enc.Encrypt(pb)
		if err != nil {
			t.Fatal(err)
		}
		s, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	jsonSerialized := func() string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: ours},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := s.Sign(pb)
		if err != nil {
			t.Fatal(err)
		}
		return obj.FullSerialize()
	}()
	embeddedJWK := func() string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: ours},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("at+jwt").WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := s.Sign(pb)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := obj.CompactSerialize()
		return out
	}()
	// The signature's last base64url character carries 4 unused bits:
	// setting them gives another encoding of the same signature.
	sig := parts[2]
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", sig[len(sig)-1])
	nonCanonical := parts[0] + "." + parts[1] + "." + sig[:len(sig)-1] +
		string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last|1])

	cases := []struct {
		name  string
		token string
		// advance moves the clock before verifying.
		advance time.Duration
		// why is the refusal reason the error must name (for logs).
		why string
	}{
		{"fail/alg none", noneHeader + "." + parts[1] + ".", 0, "algorithm not allowed"},
		{"fail/alg none with the old signature", noneHeader + "." + parts[1] + "." + parts[2], 0, "algorithm not allowed"},
		{"fail/payload changed keeping the old signature", tampered, 0, "bad signature"},
		{"fail/signature stripped", parts[0] + "." + parts[1] + ".", 0, "bad signature"},
		{"fail/signature part missing", parts[0] + "." + parts[1], 0, "malformed JWS"},
		{"fail/signature from another Ed25519 key with our kid", sign(t, jose.EdDSA, otherEd, kid, "at+jwt", vc), 0, "bad signature"},
		{"fail/HS256 keyed with our public key (alg confusion)", sign(t, jose.HS256, []byte(pub), kid, "at+jwt", vc), 0, "algorithm not allowed"},
		{"fail/ES256 from a key we do not know", sign(t, jose.ES256, ecKey, "ec-1", "at+jwt", vc), 0, "algorithm not allowed"},
		{"fail/ES256 from a key we do not know with our kid", sign(t, jose.ES256, ecKey, kid, "at+jwt", vc), 0, "algorithm not allowed"},
		{"fail/unknown kid", sign(t, jose.EdDSA, ours, "no-such-key", "at+jwt", vc), 0, "unknown kid"},
		{"fail/missing kid", sign(t, jose.EdDSA, ours, "", "at+jwt", vc), 0, "no kid"},
		{"fail/missing typ", sign(t, jose.EdDSA, ours, kid, "", vc), 0, "missing header parameter"},
		{"fail/typ JWT", sign(t, jose.EdDSA, ours, kid, "JWT", vc), 0, "typ is not at+jwt"},
		{"fail/expired", good, DefaultTokenTTL + DefaultTokenLeeway, "expired"},
		{"fail/not yet valid (nbf)", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "nbf", now.Add(time.Hour).Unix())), 0, "not yet valid"},
		{"fail/iat in the future", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "iat", now.Add(time.Minute).Unix())), 0, "issued in the future"},
		{"fail/wrong iss", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "iss", "https://evil.test")), 0, "wrong iss"},
		{"fail/wrong aud", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "aud", []string{"other", "api"})), 0, "wrong aud"},
		{"fail/missing jti", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "jti", nil)), 0, "jti missing"},
		{"fail/missing sub", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "sub", nil)), 0, "sub missing"},
		{"fail/missing exp", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "exp", nil)), 0, "exp, nbf or iat missing"},
		{"fail/missing nbf", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "nbf", nil)), 0, "exp, nbf or iat missing"},
		{"fail/missing iat", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "iat", nil)), 0, "exp, nbf or iat missing"},
		{"fail/zero coffer_gen", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "coffer_gen", 0)), 0, "coffer_gen not a generation"},
		{"fail/negative coffer_gen", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "coffer_gen", -1)), 0, "coffer_gen not a generation"},
		{"fail/unknown coffer_kind", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "coffer_kind", "external")), 0, "unknown coffer_kind"},
		{"fail/client_id not sub", sign(t, jose.EdDSA, ours, kid, "at+jwt", withClaim(vc, "client_id", "cl_other")), 0, "client_id does not match sub"},
		{"fail/claims not an object", sign(t, jose.EdDSA, ours, kid, "at+jwt", []string{"a"}), 0, "malformed claims"},
		{"fail/embedded jwk header", embeddedJWK, 0, "unexpected header parameter"},
		{"fail/JWE instead of JWS", jwe, 0, "malformed JWS"},
		{"fail/JSON serialization", jsonSerialized, 0, "not a compact serialisation"},
		{"fail/non-canonical base64 in signature", nonCanonical, 0, "not in canonical form"},
		{"fail/newline inside", parts[0] + ".\n" + parts[1] + "." + parts[2], 0, "not a compact serialisation"},
		{"fail/garbage", "this is not a token", 0, "not a compact serialisation"},
		{"fail/empty", "", 0, "empty or too long"},
		{"fail/three dots", "a.b.c", 0, "malformed JWS"},
		{"fail/too long", good + strings.Repeat("A", MaxTokenLen), 0, "empty or too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0) // a fresh clock and cache per case; same key
			f.clock.Add(tc.advance)
			if tc.advance > 0 {
				// Prove the token was good before the clock moved.
				g := newFixture(t, 0)
				if _, err := g.tokens.Verify(tc.token); err != nil {
					t.Fatalf("token refused before the clock moved: %v", err)
				}
			}
			p, err := f.tokens.Verify(tc.token)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", p)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("refused for the wrong reason: %v, want %q", err, tc.why)
			}
			if p != nil {
				t.Fatal("a principal came back with the error")
			}
			if len(tc.token) > 8 && strings.Contains(err.Error(), tc.token) {
				t.Fatal("the error contains the token")
			}
			if strings.Contains(err.Error(), parts[2]) {
				t.Fatal("the error contains a signature")
			}
		})
	}
	// The control: the untouched token verifies.
	if _, err := f.tokens.Verify(good); err != nil {
		t.Fatalf("good token refused: %v", err)
	}
}

func TestVerifyRechecksExpiryOnCacheHits(t *testing.T) {
	f := newFixture(t, 0)
	iss := f.issue(t, testClient)
	if _, err := f.tokens.Verify(iss.Token); err != nil {
		t.Fatal(err)
	}
	if f.tokens.cache.len() != 1 {
		t.Fatalf("cache has %d entries, want 1", f.tokens.cache.len())
	}
	f.clock.Add(DefaultTokenTTL + DefaultTokenLeeway - time.Second)
	if _, err := f.tokens.Verify(iss.Token); err != nil {
		t.Fatalf("refused within the leeway: %v", err)
	}
	f.clock.Add(time.Second)
	if _, err := f.tokens.Verify(iss.Token); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("cached token verified after exp+leeway: %v", err)
	}
	if f.tokens.cache.len() != 0 {
		t.Fatal("expired entry stayed in the cache")
	}
}

func TestVerifyCacheIsBounded(t *testing.T) {
	f := newFixture(t, 3)
	var toks []string
	for range 10 {
		toks = append(toks, f.issue(t, testClient).Token)
	}
	for _, tok := range toks {
		if _, err := f.tokens.Verify(tok); err != nil {
			t.Fatal(err)
		}
		if n := f.tokens.cache.len(); n > 3 {
			t.Fatalf("cache grew to %d entries, bound is 3", n)
		}
	}
	// The most recent three are the ones kept.
	f.tokens.cache.mu.RLock()
	defer f.tokens.cache.mu.RUnlock()
	if len(f.tokens.cache.m) != 3 {
		t.Fatalf("cache has %d entries, want 3", len(f.tokens.cache.m))
	}
}

// TestCacheRefusesEntriesFromReplacedKeys: a Verify that checked a token
// under the old keys and finishes after SetKeys must not cache it.
func TestCacheRefusesEntriesFromReplacedKeys(t *testing.T) {
	c := newTokenCache(10)
	c.clear(1)
	p := &coffer.Principal{ID: "x"}
	c.put([32]byte{1}, p, t0.Add(time.Hour), 0) // verified under generation 0
	if c.len() != 0 {
		t.Fatal("an entry verified under replaced keys was cached")
	}
	c.put([32]byte{2}, p, t0.Add(time.Hour), 1)
	if _, ok := c.get([32]byte{2}, t0); !ok {
		t.Fatal("an entry of the current generation was not cached")
	}
}

func TestVerifyWithCacheDisabled(t *testing.T) {
	f := newFixture(t, -1)
	iss := f.issue(t, testClient)
	for range 2 {
		if _, err := f.tokens.Verify(iss.Token); err != nil {
			t.Fatal(err)
		}
	}
	if f.tokens.cache.len() != 0 {
		t.Fatal("disabled cache holds entries")
	}
}

func TestRotationKeepsOldKeyVerifyingUntilDropped(t *testing.T) {
	f := newFixture(t, 0)
	old := f.key
	tokOld := f.issue(t, testClient).Token
	if _, err := f.tokens.Verify(tokOld); err != nil {
		t.Fatal(err)
	}
	if f.tokens.cache.len() != 1 {
		t.Fatal("the verified token was not cached") // the test below would prove nothing
	}
	next, err := GenerateSigningKey(testRand(9), t0)
	if err != nil {
		t.Fatal(err)
	}
	f.tokens.SetKeys(next, old)
	tokNew := f.issue(t, testClient).Token
	if kidOf(t, tokNew) != next.ID {
		t.Fatal("new tokens are not signed by the new active key")
	}
	for _, tok := range []string{tokOld, tokNew} {
		if _, err := f.tokens.Verify(tok); err != nil {
			t.Fatalf("refused during rotation: %v", err)
		}
	}
	f.tokens.SetKeys(next)
	if _, err := f.tokens.Verify(tokOld); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token of a dropped key still verifies (cache not cleared?): %v", err)
	}
	if _, err := f.tokens.Verify(tokNew); err != nil {
		t.Fatalf("token of the active key refused: %v", err)
	}
}

func TestKeyPastNotAfterStopsVerifyingAndPublishing(t *testing.T) {
	f := newFixture(t, 0)
	k := f.key
	k.NotAfter = t0.Add(5 * time.Minute) // before the token's exp
	f.tokens.SetKeys(k)
	tok := f.issue(t, testClient).Token
	if _, err := f.tokens.Verify(tok); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(5 * time.Minute)
	if _, err := f.tokens.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("verified after the key's NotAfter: %v", err)
	}
	b, err := f.tokens.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 0 {
		t.Fatalf("JWKS still publishes %d keys", len(set.Keys))
	}
}

func TestSetKeysIgnoresBadAndDuplicateKeys(t *testing.T) {
	f := newFixture(t, 0)
	other, _ := GenerateSigningKey(testRand(3), t0)
	sameID := other
	sameID.ID = f.key.ID // an impostor under the active key's kid
	corrupt := other
	corrupt.ID = "corrupt"
	corrupt.Private = append(ed25519.PrivateKey{}, other.Private...)
	corrupt.Private[40] ^= 1 // public half no longer matches the seed
	f.tokens.SetKeys(f.key, sameID, corrupt, SigningKey{})
	b, err := f.tokens.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0].KeyID != f.key.ID {
		t.Fatalf("JWKS = %s", b)
	}
	if !set.Keys[0].Key.(ed25519.PublicKey).Equal(f.key.Private.Public()) {
		t.Fatal("the impostor replaced the active key")
	}
}

func TestJWKSPublishesPublicKeysThatVerifyOurTokens(t *testing.T) {
	f := newFixture(t, 0)
	old := f.key
	next, _ := GenerateSigningKey(testRand(4), t0)
	f.tokens.SetKeys(next, old)
	tok := f.issue(t, testClient).Token
	b, err := f.tokens.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"d"`) {
		t.Fatal("JWKS contains private key material")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 || set.Keys[0].KeyID != next.ID || set.Keys[1].KeyID != old.ID {
		t.Fatalf("JWKS = %s", b)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Algorithm != "EdDSA" || k.Use != "sig" {
			t.Fatalf("key %s: public=%v alg=%s use=%s", k.KeyID, k.IsPublic(), k.Algorithm, k.Use)
		}
	}
	// An outside verifier holding only the JWKS accepts the token.
	obj, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.Verify(&set); err != nil {
		t.Fatalf("token does not verify against the published JWKS: %v", err)
	}
}

func TestGenerateSigningKey(t *testing.T) {
	k1, err := GenerateSigningKey(testRand(5), t0)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := GenerateSigningKey(testRand(5), t0)
	k3, _ := GenerateSigningKey(testRand(6), t0)
	if !k1.Private.Equal(k2.Private) || k1.ID != k2.ID {
		t.Error("the same random source gave different keys: Rand is not honoured")
	}
	if k1.Private.Equal(k3.Private) || k1.ID == k3.ID {
		t.Error("different random sources gave the same key")
	}
	if !k1.NotAfter.Equal(t0.Add(DefaultSigningKeyLifetime)) {
		t.Errorf("NotAfter = %v", k1.NotAfter)
	}
	want, _ := KeyID(k1.Private.Public().(ed25519.PublicKey))
	if k1.ID != want {
		t.Errorf("kid = %q, want the thumbprint %q", k1.ID, want)
	}
	if _, err := GenerateSigningKey(&shortReader{n: 10}, t0); err == nil {
		t.Error("a short random source did not fail")
	}
	for _, s := range []string{fmt.Sprint(k1), fmt.Sprintf("%+v", k1), fmt.Sprintf("%#v", k1), fmt.Sprintf("%x", k1)} {
		if strings.Contains(s, fmt.Sprintf("%x", []byte(k1.Private))[:16]) || strings.Contains(s, fmt.Sprint([]byte(k1.Private))[:20]) {
			t.Errorf("formatting leaks the private key: %q", s)
		}
		if !strings.Contains(s, k1.ID) {
			t.Errorf("formatting %q does not name the key", s)
		}
	}
}

// TestRFC8037EdDSAVector checks go-jose's EdDSA against RFC 8037 A.1–A.5:
// the key's thumbprint (our kid scheme), the exact signature of A.4, and
// its verification.
func TestRFC8037EdDSAVector(t *testing.T) {
	var v struct {
		D, X, Thumbprint, Protected, PayloadText, Payload, JWS string
	}
	readJSON(t, "testdata/rfc8037_a4.json", &struct {
		D           *string `json:"d"`
		X           *string `json:"x"`
		Thumbprint  *string `json:"thumbprint"`
		PayloadText *string `json:"payload_text"`
		JWS         *string `json:"jws"`
	}{&v.D, &v.X, &v.Thumbprint, &v.PayloadText, &v.JWS})
	seed, err := base64.RawURLEncoding.DecodeString(v.D)
	if err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	if got := base64.RawURLEncoding.EncodeToString(pub); got != v.X {
		t.Fatalf("x = %s, want %s", got, v.X)
	}
	if kid, _ := KeyID(pub); kid != v.Thumbprint {
		t.Fatalf("thumbprint = %s, want %s (RFC 8037 A.3)", kid, v.Thumbprint)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign([]byte(v.PayloadText))
	if err != nil {
		t.Fatal(err)
	}
	got, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if got != v.JWS {
		t.Fatalf("JWS =\n%s\nwant\n%s", got, v.JWS)
	}
	parsed, err := jose.ParseSignedCompact(v.JWS, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := parsed.Verify(pub)
	if err != nil || string(payload) != v.PayloadText {
		t.Fatalf("A.5 validation: %q, %v", payload, err)
	}
}

func TestConcurrentIssueVerifyAndRotate(t *testing.T) {
	f := newFixture(t, 16)
	k2, _ := GenerateSigningKey(testRand(7), t0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				iss, err := f.tokens.Issue(testClient, "", nil)
				if err != nil {
					t.Error(err)
					return
				}
				// Both keys stay published throughout, so every token verifies.
				if _, err := f.tokens.Verify(iss.Token); err != nil {
					t.Errorf("goroutine %d, round %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 100 {
			if i%2 == 0 {
				f.tokens.SetKeys(k2, f.key)
			} else {
				f.tokens.SetKeys(f.key, k2)
			}
			_, _ = f.tokens.JWKS()
		}
	}()
	wg.Wait()
}

func kidOf(tb testing.TB, tok string) string {
	tb.Helper()
	obj, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		tb.Fatal(err)
	}
	return obj.Signatures[0].Header.KeyID
}

// FuzzVerify feeds Verify arbitrary strings: it must never panic, and the
// only string it may accept is the token Issue made, byte for byte.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, 0)
	good := fx.issue(f, testClient, "pwd", "otp").Token
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add("eyJhbGciOiJub25lIn0." + parts[1] + ".")
	f.Add(`{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`)
	f.Add("")
	f.Add("....")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := fx.tokens.Verify(s)
		if err == nil {
			if s != good {
				t.Fatalf("accepted a string that is not the issued token: %q", s)
			}
			if p == nil || p.ID != testClient.ID {
				t.Fatalf("accepted with principal %+v", p)
			}
			return
		}
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("error %v does not wrap ErrInvalidToken", err)
		}
	})
}

func BenchmarkIssue(b *testing.B) {
	f := newFixture(b, 0)
	f.tokens.cfg.Rand = rand.Reader
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.tokens.Issue(testClient, "role:a", []string{"pwd"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	f := newFixture(b, 0)
	tok := f.issue(b, testClient).Token
	if _, err := f.tokens.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.tokens.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyUncached(b *testing.B) {
	f := newFixture(b, -1)
	tok := f.issue(b, testClient).Token
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.tokens.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// A token from a Coffer before generations (no coffer_gen) verifies as
// generation 1, where every principal started: valid while its principal
// is unchanged, refused by the generation check once it changed.
func TestVerifyTokenWithoutGenerationIsGenerationOne(t *testing.T) {
	f := newFixture(t, 0)
	vc := validClaims(f.clock.Now())
	delete(vc, "coffer_gen")
	p, err := f.tokens.Verify(sign(t, jose.EdDSA, f.key.Private, f.key.ID, "at+jwt", vc))
	if err != nil {
		t.Fatal(err)
	}
	if p.Generation != 1 {
		t.Fatalf("generation %d, want 1", p.Generation)
	}
}
