package attack

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// The routes of the Vault-compatible transit surface (internal/vaultcompat).
const (
	vaultGET  = "GET /v1/transit/{path...}"
	vaultPOST = "POST /v1/transit/{path...}"
	vaultPUT  = "PUT /v1/transit/{path...}"
)

// vaultErrors fails unless r is Vault's error answer with status, and
// returns its messages.
func vaultErrors(t testing.TB, r reply, status int) []string {
	t.Helper()
	var out struct {
		Errors []string `json:"errors"`
	}
	if r.status != status || r.header.Get("Content-Type") != "application/json" || json.Unmarshal(r.body, &out) != nil || out.Errors == nil {
		t.Fatalf("got %s (%s), want Vault's {\"errors\":[…]} with %d", r, r.header.Get("Content-Type"), status)
	}
	return out.Errors
}

// vaultCall sends a request with the token in X-Vault-Token, as Vault's
// clients do.
func vaultCall(t testing.TB, n *node, method, path, token string, body any) reply {
	t.Helper()
	b, _ := json.Marshal(body)
	if s, ok := body.(string); ok {
		b = []byte(s)
	}
	return n.send(t, req{method: method, path: path, contentType: "application/json", body: b, header: map[string]string{"X-Vault-Token": token}})
}

// vaultAttacks: the surface speaks Vault's dialect but keeps Coffer's
// guarantees — no token, a bad one or a forged one is Vault's 403 and
// nothing is done; SQL in a path or a field never runs and is never echoed;
// every ciphertext that does not open has the one error; a principal the
// policy does not allow gets nothing.
func vaultAttacks() []attack {
	var out []attack
	for _, tt := range []struct{ route, method, path string }{
		{vaultGET, "GET", "/v1/transit/keys/k1"},
		{vaultPOST, "POST", "/v1/transit/keys/vault-forged"},
		{vaultPUT, "PUT", "/v1/transit/keys/vault-forged"},
	} {
		out = append(out, attack{tt.route, "no token, garbage and forged tokens are Vault's 403, nothing done", func(t *testing.T, w *world) {
			bad := []string{"", "garbage", "hvs.CAESIJlU", "Bearer " + w.n.admin}
			for _, tok := range w.forgeries(t) {
				bad = append(bad, tok)
			}
			for _, tok := range bad {
				r := vaultCall(t, w.n, tt.method, tt.path, tok, nil)
				if msgs := vaultErrors(t, r, 403); !slices.Equal(msgs, []string{"permission denied"}) {
					t.Errorf("token %.20q: %q", tok, msgs)
				}
				r = w.n.send(t, req{method: tt.method, path: tt.path, header: map[string]string{"Authorization": "Bearer " + tok}})
				vaultErrors(t, r, 403)
			}
			if r := vaultCall(t, w.n, "GET", "/v1/transit/keys/vault-forged", w.n.admin, nil); r.status != 404 {
				t.Fatalf("a refused create made the key: %s", r)
			}
		}})
	}
	out = append(out,
		attack{vaultPOST, "SQL in the key name or path is Vault's 400/404, never run, never echoed", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				for _, path := range []string{"/v1/transit/encrypt/%s", "/v1/transit/keys/%s/rotate", "/v1/transit/hmac/k1/%s"} {
					r := vaultCall(t, w.n, "POST", strings.Replace(path, "%s", url.PathEscape(p), 1), w.n.admin,
						map[string]any{"plaintext": "cGxhbnRlZA==", "input": "eA=="})
					if keyName.MatchString(p) && r.status == 200 {
						// "_" is a valid key name: Vault's encrypt makes the
						// key it names, literally that one and no other.
						if g := vaultCall(t, w.n, "GET", "/v1/transit/keys/"+url.PathEscape(p), w.n.admin, nil); g.status != 200 {
							t.Fatalf("%s answered 200 but key %q is not there: %s", path, p, g)
						}
						continue
					}
					if r.status != 400 && r.status != 404 && r.status != 405 {
						t.Fatalf("%s: %s", path, r)
					}
					vaultErrors(t, r, r.status)
					noEcho(t, r, p)
				}
			})
		}},
		attack{vaultPOST, "SQL in fields fails alone or whole, unechoed", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				if invalidUTF8(p) {
					return
				}
				r := vaultCall(t, w.n, "POST", "/v1/transit/decrypt/k1", w.n.admin, `{"batch_input":[{"ciphertext":`+js(p)+`},{"ciphertext":`+
					js("vault:v1:"+p)+`},{"ciphertext":`+js(w.ciphertext)+`,"context":`+js(p)+`}]}`)
				if r.status != 400 || !bytes.Contains(r.body, []byte(`"batch_results"`)) {
					t.Fatalf("batch of bad items: %s", r)
				}
				noEcho(t, r, p)
				r = vaultCall(t, w.n, "POST", "/v1/transit/encrypt/k1", w.n.admin, `{"plaintext":`+js(p)+`,"context":`+js(p)+`,"key_version":`+js(p)+`}`)
				if r.status != 200 {
					vaultErrors(t, r, 400)
				}
				noEcho(t, r, p)
			})
		}},
		attack{vaultPOST, "vault: ciphertexts that do not open share one error", func(t *testing.T, w *world) {
			vct := "vault:" + strings.TrimPrefix(w.ciphertext, "coffer:")
			env, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(w.ciphertext, "coffer:v1:"))
			if err != nil {
				t.Fatal(err)
			}
			env[len(env)-1] ^= 1
			bad := []map[string]any{
				{"ciphertext": "vault:v1:" + base64.StdEncoding.EncodeToString(env)},
				{"ciphertext": vct, "context": "dGVuYW50"},
				{"ciphertext": "vault:v2:" + strings.TrimPrefix(w.ciphertext, "coffer:v1:")},
			}
			for _, it := range bad {
				r := vaultCall(t, w.n, "POST", "/v1/transit/decrypt/k1", w.n.admin, it)
				if msgs := vaultErrors(t, r, 400); !slices.Equal(msgs, []string{"ciphertext cannot be decrypted"}) {
					t.Errorf("%v: %q", it, msgs)
				}
			}
			r := vaultCall(t, w.n, "POST", "/v1/transit/decrypt/k1", w.n.admin, map[string]any{"ciphertext": vct})
			if r.status != 200 || !bytes.Contains(r.body, []byte(`"plaintext":"cGxhbnRlZA=="`)) {
				t.Fatalf("the planted ciphertext under vault:v1: %s", r)
			}
		}},
		attack{vaultPUT, "a customer gets Vault's 403 and nothing else on every operation", func(t *testing.T, w *world) {
			for _, tt := range []struct {
				path string
				body map[string]any
			}{
				{"/v1/transit/decrypt/k1", map[string]any{"ciphertext": w.ciphertext}},
				{"/v1/transit/decrypt/k1", map[string]any{"batch_input": []map[string]any{{"ciphertext": w.ciphertext}}}},
				{"/v1/transit/rewrap/k1", map[string]any{"ciphertext": w.ciphertext}},
				{"/v1/transit/encrypt/k1", map[string]any{"plaintext": "eA=="}},
				{"/v1/transit/hmac/k1", map[string]any{"input": "eA=="}},
				{"/v1/transit/verify/k1", map[string]any{"input": "eA==", "hmac": "vault:v1:AAAA"}},
				{"/v1/transit/datakey/plaintext/k1", nil},
				{"/v1/transit/keys/k1/rotate", nil},
				{"/v1/transit/keys/k1/config", map[string]any{"deletion_allowed": true}},
				{"/v1/transit/keys/customer-key", nil},
				{"/v1/transit/keys/k1/import_version", map[string]any{"ciphertext": "AAAA"}},
			} {
				r := vaultCall(t, w.n, "PUT", tt.path, w.tokenA, tt.body)
				if msgs := vaultErrors(t, r, 403); !slices.Equal(msgs, []string{"permission denied"}) {
					t.Errorf("%s: %q", tt.path, msgs)
				}
				if bytes.Contains(r.body, []byte("cGxhbnRlZA==")) || bytes.Contains(r.body, []byte("vault:v")) {
					t.Errorf("%s answers %s", tt.path, r.body)
				}
			}
		}},
		attack{vaultGET, "a customer reads no key, lists none; unknown paths are Vault's 404", func(t *testing.T, w *world) {
			vaultErrors(t, vaultCall(t, w.n, "GET", "/v1/transit/keys/k1", w.tokenA, nil), 403)
			vaultErrors(t, vaultCall(t, w.n, "GET", "/v1/transit/keys?list=true", w.tokenA, nil), 403)
			vaultErrors(t, vaultCall(t, w.n, "GET", "/v1/transit/wrapping_key", w.tokenA, nil), 403)
			if msgs := vaultErrors(t, vaultCall(t, w.n, "GET", "/v1/transit/export/encryption-key/k1", w.n.admin, nil), 404); !slices.Equal(msgs, []string{"unsupported path"}) {
				t.Errorf("export: %q", msgs)
			}
			vaultErrors(t, vaultCall(t, w.n, "DELETE", "/v1/transit/keys/k1", w.n.admin, nil), 405)
			if r := vaultCall(t, w.n, "GET", "/v1/transit/keys/k1", w.n.admin, nil); r.status != 200 {
				t.Fatalf("k1 after the attempts: %s", r)
			}
		}},
	)
	return out
}
