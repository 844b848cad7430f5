package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/transit/transittest"
)

// byokWrap does what a client of the BYOK import does (transittest.Wrap,
// SHA-256) for the wrapping key in publicPEM, and base64-encodes it.
func byokWrap(t *testing.T, publicPEM string, key []byte) string {
	t.Helper()
	pub, err := transittest.ParsePublicKey(publicPEM)
	if err != nil {
		t.Fatal(err)
	}
	if pub.N.BitLen() != 4096 {
		t.Fatalf("wrapping key of %d bits, want RSA-4096", pub.N.BitLen())
	}
	ct, err := transittest.Wrap(pub, sha256.New(), key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(ct)
}

// openTransit decrypts a transit ciphertext with nothing but the raw key
// (transittest.Open), not through the server.
func openTransit(t *testing.T, key []byte, name, ct string, bound []byte) []byte {
	t.Helper()
	pt, err := transittest.Open(key, name, ct, bound)
	if err != nil {
		t.Fatalf("ciphertext %q does not open under the imported key: %v", ct, err)
	}
	return pt
}

// TestTransitBYOKImport: a key wrapped client-side for the wrapping key is
// imported, and what Coffer then encrypts opens with that key alone, in
// the test. Refusals, access and a restart are checked too.
func TestTransitBYOKImport(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		wrappingKey := func(tok string) string {
			t.Helper()
			st, _, b := n.do("GET", "/v1/keys/wrapping_key", tok, "", nil)
			if st != 200 {
				t.Fatalf("GET /v1/keys/wrapping_key: %d %s", st, b)
			}
			var out struct {
				PublicKey string `json:"public_key"`
			}
			mustJSON(t, b, &out)
			if strings.Contains(string(b), "PRIVATE") {
				t.Fatal("the wrapping key answer holds a private key")
			}
			return out.PublicKey
		}
		pub := wrappingKey(tok)
		if pub2 := wrappingKey(tok); pub2 != pub {
			t.Fatal("the wrapping key changed between two calls")
		}

		key := []byte("0123456789abcdef0123456789ABCDEF") // the key we bring
		st, _, b := n.postJSON("/v1/keys/byok/import", tok, map[string]any{"ciphertext": byokWrap(t, pub, key), "hash_function": "SHA256"})
		if st != 201 {
			t.Fatalf("import: %d %s", st, b)
		}
		var info struct {
			Name          string `json:"name"`
			LatestVersion uint32 `json:"latest_version"`
			Exportable    bool   `json:"exportable"`
		}
		mustJSON(t, b, &info)
		if info.Name != "byok" || info.LatestVersion != 1 || info.Exportable {
			t.Fatalf("imported key: %s", b)
		}
		if bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(key))) || bytes.Contains(b, key) {
			t.Fatal("the import answer holds the key")
		}

		bound := []byte("tenant-42")
		st, _, b = n.postJSON("/v1/keys/byok/encrypt", tok, map[string]any{
			"plaintext": base64.StdEncoding.EncodeToString([]byte("4111 1111 1111 1111")),
			"context":   base64.StdEncoding.EncodeToString(bound)})
		if st != 200 {
			t.Fatalf("encrypt: %d %s", st, b)
		}
		var enc struct {
			Ciphertext string `json:"ciphertext"`
		}
		mustJSON(t, b, &enc)
		if !strings.HasPrefix(enc.Ciphertext, "coffer:v1:") {
			t.Fatalf("ciphertext %q, want version 1", enc.Ciphertext)
		}
		if got := openTransit(t, key, "byok", enc.Ciphertext, bound); string(got) != "4111 1111 1111 1111" {
			t.Fatalf("independent decryption = %q", got)
		}

		problem := func(st int, h http.Header, b []byte, wantStatus int, wantDetail string) {
			t.Helper()
			var p struct {
				Detail string `json:"detail"`
			}
			_ = json.Unmarshal(b, &p)
			if st != wantStatus || h.Get("Content-Type") != "application/problem+json" || (wantDetail != "" && p.Detail != wantDetail) {
				t.Fatalf("got %d %s (%s), want %d %q as problem+json", st, b, h.Get("Content-Type"), wantStatus, wantDetail)
			}
		}
		// The name is taken; the reserved name cannot be made.
		var h http.Header
		st, h, b = n.postJSON("/v1/keys/byok/import", tok, map[string]any{"ciphertext": byokWrap(t, pub, key)})
		problem(st, h, b, 409, "transit key exists")
		st, h, b = n.postJSON("/v1/keys", tok, map[string]any{"name": "wrapping_key"})
		problem(st, h, b, 422, "the key name wrapping_key is reserved")
		// Anything that does not unwrap is one answer.
		good, _ := base64.StdEncoding.DecodeString(byokWrap(t, pub, key))
		for name, ct := range map[string][]byte{
			"tampered OAEP": append(append([]byte{good[0] ^ 1}, good[1:512]...), good[512:]...),
			"tampered KWP":  append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1),
			"truncated":     good[:len(good)-8],
		} {
			st, _, b = n.postJSON("/v1/keys/fresh/import", tok, map[string]any{"ciphertext": base64.StdEncoding.EncodeToString(ct)})
			if st != 422 || !strings.Contains(string(b), `"the ciphertext does not unwrap to a key"`) {
				t.Fatalf("%s: %d %s", name, st, b)
			}
		}
		st, h, b = n.postJSON("/v1/keys/fresh/import", tok, map[string]any{"ciphertext": byokWrap(t, pub, key), "hash_function": "SHA384"})
		problem(st, h, b, 422, "the ciphertext does not unwrap to a key")
		st, h, b = n.postJSON("/v1/keys/fresh/import", tok, map[string]any{"ciphertext": byokWrap(t, pub, key[:16])})
		problem(st, h, b, 422, "the imported key must be 32 bytes (an AES-256-GCM key)")
		if st, _, b := n.do("GET", "/v1/keys/fresh", tok, "", nil); st != 404 {
			t.Fatalf("a refused import made a key: %d %s", st, b)
		}

		// Without admin on keys: 403 for both.
		if err := n.Admin.PutPolicy(context.Background(), []byte(accessPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		sup, err := n.Admin.CreateClient(context.Background(), "support-desk", []string{"support"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		supTok := n.Token(sup.ClientID, sup.ClientSecret)
		st, h, b = n.do("GET", "/v1/keys/wrapping_key", supTok, "", nil)
		problem(st, h, b, 403, "")
		st, h, b = n.postJSON("/v1/keys/other/import", supTok, map[string]any{"ciphertext": byokWrap(t, pub, key)})
		problem(st, h, b, 403, "")
		st, h, b = n.postJSON("/v1/keys/byok/import_version", supTok, map[string]any{"ciphertext": byokWrap(t, pub, key)})
		problem(st, h, b, 403, "")

		// A second key brought as the next version encrypts from then on;
		// the first still decrypts.
		key2 := []byte("fedcba9876543210FEDCBA9876543210")
		st, _, b = n.postJSON("/v1/keys/byok/import_version", tok, map[string]any{"ciphertext": byokWrap(t, pub, key2)})
		if st != 200 {
			t.Fatalf("import_version: %d %s", st, b)
		}
		mustJSON(t, b, &info)
		if info.LatestVersion != 2 || info.Exportable {
			t.Fatalf("after import_version: %s", b)
		}
		st, _, b = n.postJSON("/v1/keys/byok/encrypt", tok, map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte("v2"))})
		var enc2 struct {
			Ciphertext string `json:"ciphertext"`
		}
		mustJSON(t, b, &enc2)
		if st != 200 || !strings.HasPrefix(enc2.Ciphertext, "coffer:v2:") || string(openTransit(t, key2, "byok", enc2.Ciphertext, nil)) != "v2" {
			t.Fatalf("encrypt after import_version: %d %s", st, b)
		}
		st, h, b = n.postJSON("/v1/keys/missing/import_version", tok, map[string]any{"ciphertext": byokWrap(t, pub, key2)})
		problem(st, h, b, 404, "transit key not found")

		// Audited as what each call did.
		st, _, b = n.do("GET", "/v1/audit/events?limit=500", tok, "", nil)
		if st != 200 {
			t.Fatalf("audit: %d %s", st, b)
		}
		var evs struct {
			Events []struct {
				Action   string `json:"action"`
				Resource string `json:"resource"`
				Status   int    `json:"status"`
			} `json:"events"`
		}
		mustJSON(t, b, &evs)
		seen := map[string]bool{}
		for _, e := range evs.Events {
			seen[e.Action+" "+e.Resource+" "+string(rune('0'+e.Status/100))] = true
		}
		for _, want := range []string{"keys.wrapping_key keys/wrapping_key 2", "keys.create keys/wrapping_key 4",
			"keys.import keys/byok 2", "keys.import_version keys/byok 2", "keys.import keys/byok 4", "keys.import keys/other 4"} {
			if !seen[want] {
				t.Errorf("no audit event %q (have %v)", want, seen)
			}
		}
		if strings.Contains(n.Logs.String(), base64.StdEncoding.EncodeToString(key)) || strings.Contains(n.Logs.String(), string(key)) {
			t.Error("the log holds the imported key")
		}

		// A restart keeps the wrapping key and the imported key.
		n.Restart()
		tok = n.Token(n.Init.ClientID, n.Init.ClientSecret)
		if got := wrappingKey(tok); got != pub {
			t.Fatal("the wrapping key changed across a restart")
		}
		st, _, b = n.postJSON("/v1/keys/byok/decrypt", tok, map[string]any{"ciphertext": enc.Ciphertext,
			"context": base64.StdEncoding.EncodeToString(bound)})
		if st != 200 || !strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte("4111 1111 1111 1111"))) {
			t.Fatalf("decrypt after restart: %d %s", st, b)
		}
	})
}
