package attack

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strings"
	"testing"
	"time"
)

var b64 = base64.RawURLEncoding

// jwtParts splits a compact JWS into its decoded header and claims and
// its encoded signature.
func jwtParts(t testing.TB, tok string) (header, claims map[string]any, sig string) {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(p))
	}
	for i, out := range []*map[string]any{&header, &claims} {
		b, err := b64.DecodeString(p[i])
		if err != nil {
			t.Fatal(err)
		}
		mustJSON(t, b, out)
	}
	return header, claims, p[2]
}

func enc(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(b)
}

// sign makes a compact JWS of header and claims with sign over the
// signing input.
func sign(t testing.TB, header, claims map[string]any, signer func(input []byte) []byte) string {
	t.Helper()
	input := enc(t, header) + "." + enc(t, claims)
	return input + "." + b64.EncodeToString(signer([]byte(input)))
}

func hmacSigner(h func() hash.Hash, key []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(h, key)
		m.Write(in)
		return m.Sum(nil)
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// forgeries builds, from a real customer token and the server's published
// keys, tokens an attacker could make that claim admin. Every one must be
// refused.
func (w *world) forgeries(t testing.TB) map[string]string {
	t.Helper()
	if w.forged != nil {
		return w.forged
	}
	n := w.n
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	n.must(t, 200, "GET", "/.well-known/jwks.json", "", nil, &jwks)
	if len(jwks.Keys) == 0 {
		t.Fatal("JWKS has no keys")
	}
	x, _ := jwks.Keys[0]["x"].(string)
	pub, err := b64.DecodeString(x)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("JWKS key x %q: %v", x, err)
	}
	jwksJSON, _ := json.Marshal(jwks)
	h, c, sig := jwtParts(t, w.tokenA)
	kid := h["kid"]
	admin := with(c, "roles", []string{"admin"}, "sub", n.Init.ClientID, "client_id", n.Init.ClientID)
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	ed := func(in []byte) []byte { return ed25519.Sign(attacker, in) }
	attackerJWK := map[string]any{"kty": "OKP", "crv": "Ed25519",
		"x": b64.EncodeToString(attacker.Public().(ed25519.PublicKey))}
	none := func([]byte) []byte { return nil }
	input := enc(t, h) + "." + enc(t, c)
	w.forged = map[string]string{
		"alg none":                         sign(t, with(h, "alg", "none"), admin, none),
		"alg None":                         sign(t, with(h, "alg", "None"), admin, none),
		"alg none without kid":             sign(t, with(h, "alg", "none", "kid", nil), admin, none),
		"alg HS256 keyed with the JWKS x":  sign(t, with(h, "alg", "HS256"), admin, hmacSigner(sha256.New, pub)),
		"alg HS256 keyed with x's text":    sign(t, with(h, "alg", "HS256"), admin, hmacSigner(sha256.New, []byte(x))),
		"alg HS256 keyed with the JWKS":    sign(t, with(h, "alg", "HS256"), admin, hmacSigner(sha256.New, jwksJSON)),
		"alg HS512 keyed with the JWKS x":  sign(t, with(h, "alg", "HS512"), admin, hmacSigner(sha512.New, pub)),
		"stripped signature":               input + ".",
		"signature dropped":                input,
		"altered payload roles admin":      enc(t, h) + "." + enc(t, with(c, "roles", []string{"admin"})) + "." + sig,
		"altered payload sub admin":        enc(t, h) + "." + enc(t, admin) + "." + sig,
		"unknown kid":                      sign(t, with(h, "kid", "attacker-key"), admin, ed),
		"server kid, attacker key":         sign(t, h, admin, ed),
		"kid path traversal":               sign(t, with(h, "kid", "../../../../../../dev/null"), admin, ed),
		"kid path traversal HS256 empty":   sign(t, with(h, "alg", "HS256", "kid", "../../../../../../dev/null"), admin, hmacSigner(sha256.New, nil)),
		"kid SQL":                          sign(t, with(h, "kid", "x' UNION SELECT '"+x+"' --"), admin, ed),
		"kid SQL always true":              sign(t, with(h, "kid", "' OR '1'='1"), admin, ed),
		"embedded jwk":                     sign(t, with(h, "jwk", attackerJWK), admin, ed),
		"jku to an attacker's keys":        sign(t, with(h, "jku", "https://attacker.example/jwks.json"), admin, ed),
		"typ JWT":                          enc(t, with(h, "typ", "JWT")) + "." + enc(t, c) + "." + sig,
		"signature of another token":       enc(t, h) + "." + enc(t, admin) + "." + strings.Split(n.admin, ".")[2],
		"two signatures (JSON in compact)": input + "." + sig + "." + sig,
		"padding in the signature":         input + "." + sig + "==",
	}
	if kid == nil {
		t.Fatal("server tokens carry no kid")
	}
	return w.forged
}

// TestJWTForgery sends forged, altered, expired and foreign tokens to an
// admin-only route: every one is a 401 with a Bearer challenge, while the
// genuine tokens they were made from keep working.
func TestJWTForgery(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		w := plantWorld(t, n)
		before := w.snapshot(t)
		n.must(t, 200, "GET", "/v1/clients", n.admin, nil, nil)
		n.must(t, 403, "GET", "/v1/clients", w.tokenA, nil, nil)
		for name, tok := range w.forgeries(t) {
			t.Run(name, func(t *testing.T) {
				want401(t, n.call(t, "GET", "/v1/clients", tok, nil))
				want401(t, n.call(t, "POST", "/v1/clients", tok, map[string]any{"name": "minted", "roles": []string{"admin"}}))
			})
		}

		t.Run("wrong audience", func(t *testing.T) {
			n.reopen(setup{settings: map[string]string{"auth.audience": "another-coffer"}})
			want401(t, n.call(t, "GET", "/v1/clients", n.admin, nil))
		})
		t.Run("wrong issuer", func(t *testing.T) {
			// A node with its own auth.issuer issues under it and also
			// accepts the deployment's issuer recorded in the store (the
			// tokens of every other node); a node without one accepts the
			// deployment's alone. So a token signed by this deployment's
			// own key under another issuer is refused there.
			n.reopen(setup{settings: map[string]string{"auth.issuer": "https://another-coffer.example"}})
			foreign := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			if _, claims, _ := jwtParts(t, foreign); claims["iss"] != "https://another-coffer.example" {
				t.Fatalf("token issued under %v", claims["iss"])
			}
			n.must(t, 200, "GET", "/v1/clients", foreign, nil, nil)
			n.reopen(setup{})
			want401(t, n.call(t, "GET", "/v1/clients", foreign, nil))
		})
		// Back on the original settings the same token works: the refusals
		// above were the audience and the issuer, not the restart.
		n.reopen(setup{})
		n.must(t, 200, "GET", "/v1/clients", n.admin, nil, nil)

		t.Run("expired", func(t *testing.T) {
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			n.must(t, 200, "GET", "/v1/clients", tok, nil, nil)
			n.Clock.Advance(15*time.Minute + 31*time.Second) // TTL plus leeway
			want401(t, n.call(t, "GET", "/v1/clients", tok, nil))
			want401(t, n.call(t, "GET", "/v1/clients", n.admin, nil))
		})
		n.admin = n.Token(n.Init.ClientID, n.Init.ClientSecret)
		w.unchanged(t, before)
		noEchoInLog(t, n)
	})
}
