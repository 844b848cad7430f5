package attack

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// batchAttacks: Vault-style batch_input on the transit routes. Each item
// succeeds or fails alone, which must not turn a batch into an oracle:
// every ciphertext that does not open gets the same error whatever was
// wrong with it, no item's error echoes what was sent, a principal the
// policy refuses gets a 403 and no batch_results, and a batch over
// limits.max_batch_items is refused whole.
func batchAttacks() []attack {
	return []attack{
		{"POST /v1/keys/{name}/decrypt", "batch_input items that do not open share one error", batchOracle("/decrypt")},
		{"POST /v1/keys/{name}/rewrap", "batch_input items that do not open share one error", batchOracle("/rewrap")},
		{"POST /v1/keys/{name}/encrypt", "SQL in batch_input plaintexts and contexts fails alone, unechoed", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				if invalidUTF8(p) {
					return // not JSON-encodable: the body is refused whole (covered by the hostile-body cases)
				}
				r := w.n.call(t, "POST", "/v1/keys/k1/encrypt", w.n.admin, `{"batch_input":[{"plaintext":`+js(p)+`},`+
					`{"plaintext":"cGxhbnRlZA==","context":`+js(p)+`,"reference":"x"},{"plaintext":"cGxhbnRlZA=="}]}`)
				res := batchResults(t, r, 3)
				_, err := base64.StdEncoding.Strict().DecodeString(p)
				if (res[0].Error == "plaintext must be standard base64") != (err != nil) ||
					(res[1].Error == "context must be standard base64") != (err != nil) ||
					res[1].Reference != "x" || res[2].Error != "" || !strings.HasPrefix(res[2].Ciphertext, "coffer:v1:") {
					t.Errorf("batch_results %s", r.body)
				}
				noEcho(t, r, p)
			})
		}},
		{"POST /v1/keys/{name}/decrypt", "SQL in batch_input ciphertexts fails alone, unechoed", func(t *testing.T, w *world) {
			forEachPayload(t, func(t *testing.T, p string) {
				if invalidUTF8(p) {
					return
				}
				r := w.n.call(t, "POST", "/v1/keys/k1/decrypt", w.n.admin, `{"batch_input":[{"ciphertext":`+js(p)+`},{"ciphertext":`+
					js("coffer:v1:"+p)+`},{"ciphertext":`+js(w.ciphertext)+`}]}`)
				res := batchResults(t, r, 3)
				if res[0].Error == "" || res[1].Error == "" || res[2].Plaintext == nil || *res[2].Plaintext != "cGxhbnRlZA==" {
					t.Errorf("batch_results %s", r.body)
				}
				noEcho(t, r, p)
			})
		}},
		{"POST /v1/keys/{name}/decrypt", "a customer's batch_input is 403 without results", func(t *testing.T, w *world) {
			for _, path := range []string{"/v1/keys/k1/decrypt", "/v1/keys/k1/rewrap"} {
				r := w.n.call(t, "POST", path, w.tokenA, map[string]any{"batch_input": []map[string]any{{"ciphertext": w.ciphertext}}})
				wantProblem(t, r, 403, "not allowed to decrypt keys/k1")
				if bytes.Contains(r.body, []byte("batch_results")) || bytes.Contains(r.body, []byte("cGxhbnRlZA==")) {
					t.Errorf("a refused batch answers %s", r.body)
				}
			}
			r := w.n.call(t, "POST", "/v1/keys/k1/encrypt", w.tokenA, map[string]any{"batch_input": []map[string]any{{"plaintext": "eA=="}}})
			wantProblem(t, r, 403, "not allowed to encrypt keys/k1")
		}},
		{"POST /v1/keys/{name}/encrypt", "a batch_input over max_batch_items is 413 and does nothing", func(t *testing.T, w *world) {
			items := make([]map[string]any, 1001)
			for i := range items {
				items[i] = map[string]any{"ciphertext": w.ciphertext}
			}
			for _, path := range []string{"/v1/keys/k1/decrypt", "/v1/keys/k1/rewrap"} {
				wantProblem(t, w.n.call(t, "POST", path, w.n.admin, map[string]any{"batch_input": items}), 413,
					"batch_input: at most 1000 items per request")
			}
			for i := range items {
				items[i] = map[string]any{"plaintext": "eA=="}
			}
			wantProblem(t, w.n.call(t, "POST", "/v1/keys/k1/encrypt", w.n.admin, map[string]any{"batch_input": items}), 413,
				"batch_input: at most 1000 items per request")
		}},
	}
}

// batchEntry is one entry of batch_results.
type batchEntry struct {
	Ciphertext string  `json:"ciphertext"`
	Plaintext  *string `json:"plaintext"`
	Error      string  `json:"error"`
	Reference  string  `json:"reference"`
}

// batchResults decodes a 200 batch_results answer of n entries.
func batchResults(t *testing.T, r reply, n int) []batchEntry {
	t.Helper()
	var out struct {
		BatchResults []batchEntry `json:"batch_results"`
	}
	wantJSON(t, r, 200, &out)
	if len(out.BatchResults) != n {
		t.Fatalf("%d batch_results, want %d: %s", len(out.BatchResults), n, r.body)
	}
	return out.BatchResults
}

// noEcho fails when an answer holds a payload long enough to tell.
func noEcho(t *testing.T, r reply, p string) {
	t.Helper()
	if len(p) >= 6 && bytes.Contains(r.body, []byte(strings.Trim(js(p), `"`))) {
		t.Errorf("the answer echoes %q: %s", p, r.body)
	}
}

// batchOracle sends k1's planted ciphertext beside every way it can fail to
// open — altered anywhere, relabelled to another version, under another
// context, another key's ciphertext — and wants one error for all of them
// while the planted one still opens.
func batchOracle(suffix string) func(t *testing.T, w *world) {
	return func(t *testing.T, w *world) {
		n := w.n
		if r := n.call(t, "POST", "/v1/keys", n.admin, map[string]any{"name": "batch-other"}); r.status != 201 && r.status != 409 {
			t.Fatalf("create key: %s", r)
		}
		var other struct {
			Ciphertext string `json:"ciphertext"`
		}
		n.must(t, 200, "POST", "/v1/keys/batch-other/encrypt", n.admin, map[string]any{"plaintext": "cGxhbnRlZA=="}, &other)
		env, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(w.ciphertext, "coffer:v1:"))
		if err != nil {
			t.Fatal(err)
		}
		variant := func(prefix string, edit func(e []byte)) string {
			e := bytes.Clone(env)
			edit(e)
			return prefix + base64.StdEncoding.EncodeToString(e)
		}
		bad := map[string]map[string]any{
			"tag flipped":     {"ciphertext": variant("coffer:v1:", func(e []byte) { e[len(e)-1] ^= 1 })},
			"nonce flipped":   {"ciphertext": variant("coffer:v1:", func(e []byte) { e[5] ^= 1 })},
			"body flipped":    {"ciphertext": variant("coffer:v1:", func(e []byte) { e[17] ^= 1 })},
			"version 2":       {"ciphertext": variant("coffer:v2:", func(e []byte) { e[4] = 2 })},
			"prefix relabel":  {"ciphertext": variant("coffer:v2:", func([]byte) {})},
			"context added":   {"ciphertext": w.ciphertext, "context": "dGVuYW50"},
			"another key's":   {"ciphertext": other.Ciphertext},
			"version 1000000": {"ciphertext": variant("coffer:v1000000:", func(e []byte) { e[1], e[2], e[3], e[4] = 0, 0x0f, 0x42, 0x40 })},
		}
		items := []map[string]any{{"ciphertext": w.ciphertext, "reference": "good"}}
		var names []string
		for name, it := range bad {
			it["reference"] = name
			items = append(items, it)
			names = append(names, name)
		}
		r := n.call(t, "POST", "/v1/keys/k1"+suffix, n.admin, map[string]any{"batch_input": items})
		res := batchResults(t, r, len(items))
		if res[0].Error != "" || res[0].Reference != "good" || (suffix == "/decrypt") != (res[0].Plaintext != nil) {
			t.Errorf("the planted ciphertext: %+v", res[0])
		}
		for i, name := range names {
			e := res[i+1]
			if e.Reference != name || e.Error != "ciphertext cannot be decrypted" || e.Ciphertext != "" || e.Plaintext != nil {
				t.Errorf("%s: %+v, want the one opaque error", name, e)
			}
		}
	}
}
