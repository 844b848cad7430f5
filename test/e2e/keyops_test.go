package e2e

import (
	"context"
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// keyOps reads coffer_key_operations_total{op,outcome} from a scrape.
func keyOps(text, op, outcome string) float64 {
	re := regexp.MustCompile(`(?m)^coffer_key_operations_total\{op="` + regexp.QuoteMeta(op) + `",outcome="` + regexp.QuoteMeta(outcome) + `"\} (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// #14.8: every key operation made over the API, and by the background jobs
// a rotation starts, moves coffer_key_operations_total by its kind and
// outcome, scraped from /metrics after each: transit create, configure,
// rotate, rewrap, import, import_version and delete; rotations of
// Coffer's own keys; retire, unretire and destroy; the rewrap and reindex
// jobs; the erasure of a data subject (its key destroyed); and refusals.
// It used to move only for automatic rotation.
func TestKeyOperationsCounted(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := startWith(t, b, app.Options{RetireAfter: -1, ReindexAfter: time.Second})
			n.ServeMetrics()
			ctx := context.Background()
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			counted := func(op, outcome string, do func()) {
				t.Helper()
				before := keyOps(n.scrapeMetrics(), op, outcome)
				do()
				if after := keyOps(n.scrapeMetrics(), op, outcome); after != before+1 {
					t.Errorf("%s/%s: counter went %v → %v, want +1\n%s", op, outcome, before, after, grepLines(n.scrapeMetrics(), "coffer_key_operations"))
				}
			}
			call := func(want int, method, path string, body any) []byte {
				t.Helper()
				var st int
				var b []byte
				if method == "POST" {
					st, _, b = n.postJSON(path, tok, body)
				} else {
					st, _, b = n.do(method, path, tok, "", nil)
				}
				if st != want {
					t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
				}
				return b
			}
			b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

			// Transit keys.
			counted("create", "ok", func() { call(201, "POST", "/v1/keys", map[string]any{"name": "payments"}) })
			counted("create", "refused", func() { call(409, "POST", "/v1/keys", map[string]any{"name": "payments"}) })
			counted("configure", "ok", func() { call(200, "POST", "/v1/keys/payments/config", map[string]any{"deletable": true}) })
			var enc struct{ Ciphertext string }
			mustJSON(t, call(200, "POST", "/v1/keys/payments/encrypt", map[string]any{"plaintext": b64("4111")}), &enc)
			counted("rotate", "ok", func() { call(200, "POST", "/v1/keys/payments/rotate", nil) })
			counted("rewrap", "ok", func() { call(200, "POST", "/v1/keys/payments/rewrap", map[string]any{"ciphertext": enc.Ciphertext}) })
			var wk struct {
				PublicKey string `json:"public_key"`
			}
			mustJSON(t, call(200, "GET", "/v1/keys/wrapping_key", nil), &wk)
			counted("import", "ok", func() {
				call(201, "POST", "/v1/keys/byok/import", map[string]any{"ciphertext": byokWrap(t, wk.PublicKey, []byte("0123456789abcdef0123456789ABCDEF")), "hash_function": "SHA256"})
			})
			counted("import_version", "ok", func() {
				call(200, "POST", "/v1/keys/byok/import_version", map[string]any{"ciphertext": byokWrap(t, wk.PublicKey, []byte("fedcba9876543210FEDCBA9876543210")), "hash_function": "SHA256"})
			})
			counted("delete", "ok", func() { call(204, "DELETE", "/v1/keys/payments", nil) })

			// Coffer's own keys: a rotation, the rewrap and reindex it
			// starts, retire, unretire, destroy, and a refusal.
			_, add, readAll := customerRecords(t, n)
			for i := range 3 {
				add(i)
			}
			jobs := keyOps(n.scrapeMetrics(), "rewrap_job", "ok")
			counted("rotate", "ok", func() { call(200, "POST", "/v1/admin/keys/rotate", map[string]any{"key_id": "collection/customers"}) })
			waitFor(t, "the rewrap job to be counted", func() bool { return keyOps(n.scrapeMetrics(), "rewrap_job", "ok") > jobs })
			counted("rotate", "ok", func() { call(200, "POST", "/v1/admin/keys/rotate", map[string]any{"key_id": "index/customers/email"}) })
			waitFor(t, "the reindex job to be counted", func() bool { return keyOps(n.scrapeMetrics(), "reindex_job", "ok") > 0 })
			counted("rotate", "ok", func() { call(200, "POST", "/v1/admin/keys/rotate", map[string]any{"key_id": "jwt/signing"}) })
			v1 := map[string]any{"key_id": "collection/customers", "version": 1}
			counted("retire", "ok", func() { call(200, "POST", "/v1/admin/keys/retire", v1) })
			counted("unretire", "ok", func() { call(200, "POST", "/v1/admin/keys/unretire", v1) })
			call(200, "POST", "/v1/admin/keys/retire", v1)
			counted("destroy", "ok", func() { call(200, "POST", "/v1/admin/keys/destroy", v1) })
			counted("retire", "refused", func() {
				call(409, "POST", "/v1/admin/keys/retire", map[string]any{"key_id": "collection/customers", "version": 2})
			})
			readAll("after the key operations")

			// Erasing a subject destroys its key.
			if _, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Subject: "alice", Data: map[string]any{"email": "alice@example.com"}}); err != nil {
				t.Fatal(err)
			}
			counted("erase_subject", "ok", func() { call(200, "DELETE", "/v1/subjects/alice", nil) })

			text := n.scrapeMetrics()
			for _, leak := range []string{"payments", "byok", "customers", "alice", "collection/"} {
				if strings.Contains(grepLines(text, "coffer_key_operations"), leak) {
					t.Errorf("the key operations metric names %q", leak)
				}
			}
			t.Log(grepLines(text, "coffer_key_operations"))
		})
	}
}
