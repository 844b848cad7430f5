package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// mustProblem fails unless an answer is a problem+json of status with
// detail.
func mustProblem(t *testing.T, st int, h http.Header, b []byte, status int, detail string) {
	t.Helper()
	var p struct {
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(b, &p)
	if st != status || h.Get("Content-Type") != "application/problem+json" || p.Detail != detail {
		t.Fatalf("got %d %.300s (%s), want %d %q as problem+json", st, b, h.Get("Content-Type"), status, detail)
	}
}

// batchResult is one entry of a transit batch_results answer.
type batchResult struct {
	Ciphertext string  `json:"ciphertext"`
	KeyVersion uint32  `json:"key_version"`
	Plaintext  *string `json:"plaintext"`
	Error      string  `json:"error"`
	Reference  string  `json:"reference"`
}

// TestTransitBatchInput: over HTTPS on both backends, Vault-style
// batch_input on encrypt, decrypt and rewrap answers 200 with one
// batch_results entry per item, in order: a value and its key_version, or
// an error that names the problem and never the value; every ciphertext
// that does not open has the one opaque error; references come back. A
// malformed envelope still fails whole (400/422), the batch is bounded by
// limits.max_batch_items (413 above it), a full batch of typical values
// fits the default body limit, the single-item and items forms answer as
// before, and each batch is one audit event counting its outcomes,
// without a value.
func TestTransitBatchInput(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			// A bound of 1,000 (the default is 10,000) keeps the test's
			// full batch quick.
			testTransitBatchInput(t, start(t, b, "COFFER_LIMITS_MAX_BATCH_ITEMS=1000"))
		})
	}
}

func testTransitBatchInput(t *testing.T, n *node) {
	{
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
		call := func(want int, path string, body any) []byte {
			t.Helper()
			st, _, b := n.postJSON(path, tok, body)
			if st != want {
				t.Fatalf("POST %s: %d %.300s, want %d", path, st, b, want)
			}
			return b
		}
		results := func(b []byte, n int) []batchResult {
			t.Helper()
			var out struct {
				BatchResults []batchResult `json:"batch_results"`
			}
			mustJSON(t, b, &out)
			if len(out.BatchResults) != n {
				t.Fatalf("%d batch_results, want %d: %s", len(out.BatchResults), n, b)
			}
			return out.BatchResults
		}
		const card = "4111111111111111"
		tenant := b64("tenant-1")
		call(201, "/v1/keys", map[string]any{"name": "payments"})

		// Encrypt: two good items around a bad one.
		b := call(200, "/v1/keys/payments/encrypt", map[string]any{"batch_input": []map[string]any{
			{"plaintext": b64(card), "context": tenant, "reference": "order-1"},
			{"plaintext": "not base64 " + card, "reference": "order-2"},
			{"plaintext": b64("second")},
		}})
		enc := results(b, 3)
		if !strings.HasPrefix(enc[0].Ciphertext, "coffer:v1:") || enc[0].KeyVersion != 1 || enc[0].Error != "" || enc[0].Reference != "order-1" ||
			enc[1].Ciphertext != "" || enc[1].Error != "plaintext must be standard base64" || enc[1].Reference != "order-2" ||
			!strings.HasPrefix(enc[2].Ciphertext, "coffer:v1:") || enc[2].Error != "" {
			t.Fatalf("encrypt batch_results: %s", b)
		}
		if bytes.Contains(b, []byte(card)) || bytes.Contains(b, []byte(`"plaintext"`)) {
			t.Fatalf("encrypt batch_results echo a value: %s", b)
		}

		// Decrypt: every undecryptable item has the same opaque error.
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(enc[0].Ciphertext, "coffer:v1:"))
		raw[len(raw)-1] ^= 1
		tampered := "coffer:v1:" + base64.StdEncoding.EncodeToString(raw)
		b = call(200, "/v1/keys/payments/decrypt", map[string]any{"batch_input": []map[string]any{
			{"ciphertext": enc[0].Ciphertext, "context": tenant, "reference": "a"},
			{"ciphertext": tampered, "context": tenant},
			{"ciphertext": enc[0].Ciphertext, "context": b64("tenant-2")},
			{"ciphertext": enc[0].Ciphertext},
			{"ciphertext": "coffer:v1:@@" + card},
			{"ciphertext": enc[2].Ciphertext, "reference": "b"},
		}})
		dec := results(b, 6)
		if dec[0].Plaintext == nil || *dec[0].Plaintext != b64(card) || dec[0].Reference != "a" ||
			dec[5].Plaintext == nil || *dec[5].Plaintext != b64("second") || dec[5].Reference != "b" {
			t.Fatalf("decrypt batch_results: %s", b)
		}
		for i, want := range []string{"", "ciphertext cannot be decrypted", "ciphertext cannot be decrypted",
			"ciphertext cannot be decrypted", "ciphertext must be coffer:vN:BASE64 as encrypt returns it", ""} {
			if dec[i].Error != want || (want != "") != (dec[i].Plaintext == nil) {
				t.Errorf("decrypt result %d: %+v, want error %q", i, dec[i], want)
			}
		}
		if bytes.Contains(b, []byte(card)) {
			t.Fatalf("decrypt batch_results echo the ciphertext's value: %s", b)
		}

		// Rewrap after a rotation: good items move to v2 with their version.
		call(200, "/v1/keys/payments/rotate", map[string]any{})
		b = call(200, "/v1/keys/payments/rewrap", map[string]any{"batch_input": []map[string]any{
			{"ciphertext": enc[0].Ciphertext, "context": tenant},
			{"ciphertext": tampered, "context": tenant},
		}})
		rw := results(b, 2)
		if !strings.HasPrefix(rw[0].Ciphertext, "coffer:v2:") || rw[0].KeyVersion != 2 || rw[1].Error != "ciphertext cannot be decrypted" || rw[1].Ciphertext != "" {
			t.Fatalf("rewrap batch_results: %s", b)
		}
		if bytes.Contains(b, []byte(b64(card))) {
			t.Fatal("rewrap answers the plaintext")
		}

		// The single-item and items forms are unchanged.
		var one struct {
			Ciphertext string `json:"ciphertext"`
			KeyVersion uint32 `json:"key_version"`
		}
		mustJSON(t, call(200, "/v1/keys/payments/encrypt", map[string]any{"plaintext": b64("x")}), &one)
		if !strings.HasPrefix(one.Ciphertext, "coffer:v2:") || one.KeyVersion != 2 {
			t.Fatalf("single encrypt: %+v", one)
		}
		st, h, pb := n.postJSON("/v1/keys/payments/decrypt", tok, map[string]any{"items": []map[string]any{{"ciphertext": tampered, "context": tenant}}})
		mustProblem(t, st, h, pb, 400, "ciphertext cannot be decrypted")

		// A malformed envelope fails whole.
		for _, tt := range []struct {
			body   string
			status int
			detail string
		}{
			{`{"batch_input":`, 400, "request body is not valid JSON"},
			{`{"batch_input":{"plaintext":"eA=="}}`, 422, `field "batch_input" must be of JSON type array`},
			{`{"batch_input":["eA=="]}`, 422, `field "batch_input.0" must be of JSON type object`},
			{`{"batch_input":[{"plaintext":1}]}`, 422, `field "batch_input.0.plaintext" must be of JSON type string`},
			{`{"batch_input":[{"plaintext":"eA==","nonce":"AAAA"}]}`, 422, `unknown field "nonce"`},
			{`{"batch_input":[]}`, 422, "batch_input: at least one item is required"},
			{`{"batch_input":[{"plaintext":"eA=="}],"plaintext":"eA=="}`, 422, "give one of plaintext, items or batch_input"},
			{`{"batch_input":[{"plaintext":"eA=="}],"items":[{"plaintext":"eA=="}]}`, 422, "give one of plaintext, items or batch_input"},
		} {
			st, h, pb := n.do("POST", "/v1/keys/payments/encrypt", tok, "application/json", strings.NewReader(tt.body))
			mustProblem(t, st, h, pb, tt.status, tt.detail)
		}
		st, h, pb = n.postJSON("/v1/keys/payments/decrypt", tok, map[string]any{"batch_input": []map[string]any{{"ciphertext": enc[0].Ciphertext}}, "ciphertext": enc[0].Ciphertext})
		mustProblem(t, st, h, pb, 422, "give one of ciphertext, items or batch_input")
		st, h, pb = n.postJSON("/v1/keys/missing/encrypt", tok, map[string]any{"batch_input": []map[string]any{{"plaintext": b64("x")}}})
		mustProblem(t, st, h, pb, 404, "transit key not found")

		// The bound: limits.max_batch_items (1,000 here), 413 above
		// it. A full batch of typical values (256 bytes, 16-byte
		// contexts, a reference) fits the default body limit all the way.
		over := make([]map[string]any, 1001)
		for i := range over {
			over[i] = map[string]any{"plaintext": "eA=="}
		}
		st, h, pb = n.postJSON("/v1/keys/payments/encrypt", tok, map[string]any{"batch_input": over})
		mustProblem(t, st, h, pb, 413, "batch_input: at most 1000 items per request")
		full := make([]map[string]any, 1000)
		for i := range full {
			full[i] = map[string]any{"plaintext": b64(strings.Repeat(fmt.Sprintf("%04d", i), 64)), "context": b64(fmt.Sprintf("tenant-%09d", i)), "reference": fmt.Sprintf("row-%d", i)}
		}
		cts := results(call(200, "/v1/keys/payments/encrypt", map[string]any{"batch_input": full}), 1000)
		in := make([]map[string]any, len(cts))
		for i, c := range cts {
			if c.Error != "" || c.Reference != fmt.Sprintf("row-%d", i) {
				t.Fatalf("full batch item %d: %+v", i, c)
			}
			in[i] = map[string]any{"ciphertext": c.Ciphertext, "context": full[i]["context"], "reference": c.Reference}
		}
		for i, r := range results(call(200, "/v1/keys/payments/decrypt", map[string]any{"batch_input": in}), 1000) {
			if r.Plaintext == nil || *r.Plaintext != full[i]["plaintext"] {
				t.Fatalf("full batch item %d decrypts to another value", i)
			}
		}
		for i, r := range results(call(200, "/v1/keys/payments/rewrap", map[string]any{"batch_input": in}), 1000) {
			if r.Error != "" || r.KeyVersion != 2 {
				t.Fatalf("full batch item %d rewraps as %+v", i, r)
			}
		}

		// One audit event per batch, counting its outcomes, no value.
		st, _, ab := n.do("GET", "/v1/audit/events?limit=1000", tok, "", nil)
		if st != 200 {
			t.Fatalf("audit: %d %s", st, ab)
		}
		var evs struct {
			Events []struct {
				Action   string `json:"action"`
				Resource string `json:"resource"`
				Decision string `json:"decision"`
				Reason   string `json:"reason"`
				Count    int    `json:"count"`
				Status   int    `json:"status"`
			} `json:"events"`
		}
		mustJSON(t, ab, &evs)
		got := map[string]int{}
		for _, e := range evs.Events {
			if e.Resource == "keys/payments" && e.Status == 200 && strings.HasPrefix(e.Reason, "batch") {
				got[fmt.Sprintf("%s %s count=%d %s", e.Action, e.Decision, e.Count, e.Reason)]++
			}
		}
		for _, want := range []string{
			"encrypt allow count=2 batch of 3: 2 ok, 1 failed",
			"decrypt allow count=2 batch of 6: 2 ok, 4 failed",
			"rewrap allow count=1 batch of 2: 1 ok, 1 failed",
			"encrypt allow count=1000 batch of 1000: 1000 ok, 0 failed",
			"decrypt allow count=1000 batch of 1000: 1000 ok, 0 failed",
			"rewrap allow count=1000 batch of 1000: 1000 ok, 0 failed",
		} {
			if got[want] != 1 {
				t.Errorf("audit events %q: %d, want 1 (have %v)", want, got[want], got)
			}
		}
		for _, v := range []string{card, b64(card), "tenant-1", tenant, "order-1"} {
			if bytes.Contains(ab, []byte(v)) {
				t.Errorf("the audit log holds %q", v)
			}
		}
	}
}
