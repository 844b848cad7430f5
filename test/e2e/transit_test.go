package e2e

import (
	"encoding/base64"
	"strings"
	"testing"
)

// TestTransitRotateDecryptRewrap: over HTTPS on both backends, a transit
// key encrypts under v1 (with a context bound), rotates to v2, still
// decrypts v1, encrypts under v2, rewraps a v1 ciphertext to v2 without
// the plaintext leaving; a batch round-trips; after min_decryption_version
// is raised to 2, v1 ciphertexts are refused while their rewrapped forms
// decrypt; a tampered ciphertext or a wrong context is a 4xx without
// detail; a key not marked deletable is not deleted, one marked is.
func TestTransitRotateDecryptRewrap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		b64 := base64.StdEncoding.EncodeToString
		call := func(want int, path string, body any, out any) []byte {
			t.Helper()
			st, _, b := n.postJSON(path, tok, body)
			if st != want {
				t.Fatalf("POST %s: %d %s, want %d", path, st, b, want)
			}
			if out != nil {
				mustJSON(t, b, out)
			}
			return b
		}
		type ct struct {
			Ciphertext string `json:"ciphertext"`
			KeyVersion uint32 `json:"key_version"`
		}
		type pt struct {
			Plaintext string `json:"plaintext"`
		}
		ctx1 := b64([]byte("tenant-1"))

		call(201, "/v1/keys", map[string]any{"name": "payments"}, nil)
		call(409, "/v1/keys", map[string]any{"name": "payments"}, nil)
		var v1 ct
		call(200, "/v1/keys/payments/encrypt", map[string]any{"plaintext": b64([]byte("4111 1111")), "context": ctx1}, &v1)
		if !strings.HasPrefix(v1.Ciphertext, "coffer:v1:") || v1.KeyVersion != 1 {
			t.Fatalf("first ciphertext %+v, want coffer:v1:…", v1)
		}

		var info struct {
			LatestVersion        uint32 `json:"latest_version"`
			MinDecryptionVersion uint32 `json:"min_decryption_version"`
			Exportable           bool   `json:"exportable"`
		}
		call(200, "/v1/keys/payments/rotate", map[string]any{}, &info)
		if info.LatestVersion != 2 || info.Exportable {
			t.Fatalf("after rotate %+v, want latest 2, not exportable", info)
		}
		var old pt
		call(200, "/v1/keys/payments/decrypt", map[string]any{"ciphertext": v1.Ciphertext, "context": ctx1}, &old)
		if old.Plaintext != b64([]byte("4111 1111")) {
			t.Fatalf("v1 ciphertext after the rotation decrypts to %q", old.Plaintext)
		}
		var v2 ct
		call(200, "/v1/keys/payments/encrypt", map[string]any{"plaintext": b64([]byte("new")), "context": ctx1}, &v2)
		if !strings.HasPrefix(v2.Ciphertext, "coffer:v2:") {
			t.Fatalf("after rotate the key encrypts as %q, want coffer:v2:…", v2.Ciphertext)
		}
		var rw ct
		b := call(200, "/v1/keys/payments/rewrap", map[string]any{"ciphertext": v1.Ciphertext, "context": ctx1}, &rw)
		if !strings.HasPrefix(rw.Ciphertext, "coffer:v2:") || rw.Ciphertext == v1.Ciphertext {
			t.Fatalf("rewrap gave %q, want a new coffer:v2:… ciphertext", rw.Ciphertext)
		}
		if strings.Contains(string(b), b64([]byte("4111 1111"))) {
			t.Fatal("rewrap's answer holds the plaintext")
		}

		// A batch, in order.
		var batch struct {
			Items []ct `json:"items"`
		}
		call(200, "/v1/keys/payments/encrypt", map[string]any{"items": []map[string]any{
			{"plaintext": b64([]byte("a"))}, {"plaintext": b64([]byte("b")), "context": ctx1}}}, &batch)
		var dec struct {
			Items []pt `json:"items"`
		}
		call(200, "/v1/keys/payments/decrypt", map[string]any{"items": []map[string]any{
			{"ciphertext": batch.Items[0].Ciphertext}, {"ciphertext": batch.Items[1].Ciphertext, "context": ctx1}}}, &dec)
		if len(dec.Items) != 2 || dec.Items[0].Plaintext != b64([]byte("a")) || dec.Items[1].Plaintext != b64([]byte("b")) {
			t.Fatalf("batch decrypt %+v", dec.Items)
		}

		// Refusals that help no attacker.
		wrongCtx := call(400, "/v1/keys/payments/decrypt", map[string]any{"ciphertext": v1.Ciphertext, "context": b64([]byte("tenant-2"))}, nil)
		raw := strings.TrimPrefix(v2.Ciphertext, "coffer:v2:")
		body, _ := base64.StdEncoding.DecodeString(raw)
		body[len(body)-1] ^= 1
		tampered := call(400, "/v1/keys/payments/decrypt", map[string]any{"ciphertext": "coffer:v2:" + b64(body), "context": ctx1}, nil)
		if string(stripInstance(wrongCtx)) != string(stripInstance(tampered)) {
			t.Errorf("a wrong context and a tampered ciphertext answer differently:\n%s\n%s", wrongCtx, tampered)
		}

		// Old versions retired from decryption: v1 refused, its rewrap fine.
		call(200, "/v1/keys/payments/config", map[string]any{"min_decryption_version": 2}, nil)
		call(400, "/v1/keys/payments/decrypt", map[string]any{"ciphertext": v1.Ciphertext, "context": ctx1}, nil)
		var again pt
		call(200, "/v1/keys/payments/decrypt", map[string]any{"ciphertext": rw.Ciphertext, "context": ctx1}, &again)
		if again.Plaintext != b64([]byte("4111 1111")) {
			t.Fatalf("rewrapped ciphertext decrypts to %q", again.Plaintext)
		}

		// Deletion only when marked deletable.
		if st, _, b := n.do("DELETE", "/v1/keys/payments", tok, "", nil); st < 400 || st >= 500 {
			t.Fatalf("delete a key not marked deletable: %d %s, want 4xx", st, b)
		}
		call(200, "/v1/keys/payments/config", map[string]any{"deletable": true}, nil)
		if st, _, b := n.do("DELETE", "/v1/keys/payments", tok, "", nil); st >= 300 {
			t.Fatalf("delete a deletable key: %d %s", st, b)
		}
		if st, _, _ := n.do("GET", "/v1/keys/payments", tok, "", nil); st != 404 {
			t.Fatalf("GET a deleted key: %d, want 404", st)
		}
	})
}

// stripInstance drops the per-request parts of a problem+json answer
// (its instance and request id), so two answers can be compared.
func stripInstance(b []byte) string {
	var keep []string
	for _, part := range strings.Split(string(b), ",") {
		if strings.Contains(part, `"instance"`) || strings.Contains(part, `"request_id"`) {
			continue
		}
		keep = append(keep, part)
	}
	return strings.Join(keep, ",")
}
