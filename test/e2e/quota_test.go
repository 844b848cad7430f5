package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// tokenizeRaw posts items to /v1/tokenize with a bearer token.
func tokenizeRaw(n *node, tok string, mode string, count int) (int, http.Header, []byte) {
	items := make([]map[string]string, count)
	for i := range items {
		items[i] = map[string]string{"value": fmt.Sprintf("234-56-%04d", 1000+i), "type": "ssn", "mode": mode}
	}
	return n.postJSON("/v1/tokenize", tok, map[string]any{"items": items})
}

// #15.2: a principal over its linkable tokenization quota gets 429 with a
// Retry-After and a problem, audited as a denial and counted in the
// metrics; random tokens are not under that quota, a role's quota replaces
// the default, and other principals keep theirs.
func TestTokenizeQuota(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		n.Stop()
		withConfig(t, n.Dir, func(c *config.Config) {
			c.Limits.TokenizeLinkablePerHour = 100
			c.Limits.Roles = map[string]config.RoleLimits{"bulk": {TokenizeLinkablePerHour: 1000}}
		})
		n.Serve("127.0.0.1:0")
		n.ServeMetrics()
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		if st, _, b := tokenizeRaw(n, tok, "deterministic", 60); st != 200 {
			t.Fatalf("60 of 100: %d %s", st, b)
		}
		st, h, b := tokenizeRaw(n, tok, "format_preserving", 60)
		if st != 429 || !strings.Contains(h.Get("Content-Type"), "problem+json") || !strings.Contains(string(b), "tokenize_linkable quota") {
			t.Fatalf("120 of 100: %d %s %s", st, h.Get("Content-Type"), b)
		}
		if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 3660 {
			t.Fatalf("Retry-After %q", h.Get("Retry-After"))
		}
		if st, _, b := tokenizeRaw(n, tok, "random", 200); st != 200 {
			t.Fatalf("random tokens under a linkable quota: %d %s", st, b)
		}
		if st, _, b := tokenizeRaw(n, tok, "deterministic", 40); st != 200 {
			t.Fatalf("the 40 left of the quota: %d %s", st, b)
		}
		bulk, err := n.Admin.CreateClient(ctx, "importer", []string{"bulk", "admin"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st, _, b := tokenizeRaw(n, n.Token(bulk.ClientID, bulk.ClientSecret), "deterministic", 500); st != 200 {
			t.Fatalf("a role with a quota of 1000: %d %s", st, b)
		}
		st, _, b = n.do("GET", "/v1/audit/events?action=tokenize&limit=100", tok, "", nil)
		if st != 200 || !strings.Contains(string(b), `"tokenize quota"`) {
			t.Fatalf("the refusal is not audited: %d %s", st, b)
		}
		if m := n.scrapeMetrics(); !strings.Contains(m, `coffer_quota_refusals_total{quota="tokenize_linkable"} 1`) {
			t.Fatalf("refusal not counted:\n%s", grepLines(m, "coffer_quota"))
		}
	})
}

// #15.2 on a cluster: the quota is one across the nodes of a PostgreSQL
// deployment.
func TestTokenizeQuotaAcrossNodes(t *testing.T) {
	b := storetest.Backends()[len(storetest.Backends())-1]
	if b.Name != "postgres" {
		t.Skip("needs PostgreSQL")
	}
	n := start(t, b, "COFFER_LIMITS_TOKENIZE_LINKABLE_PER_HOUR=100")
	other := n.peer(t, "node-b", time.Now)
	items := func(k int) []client.TokenItem {
		out := make([]client.TokenItem, k)
		for i := range out {
			out[i] = client.TokenItem{Value: fmt.Sprintf("345-67-%04d", 1000+i), Type: "ssn", Mode: "deterministic"}
		}
		return out
	}
	if _, err := n.Admin.Tokenize(context.Background(), items(70)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Tokenize(context.Background(), items(70)); client.StatusCode(err) != 429 {
		t.Fatalf("140 of 100 across two nodes: %v, want 429", err)
	}
	if _, err := other.Tokenize(context.Background(), items(30)); err != nil {
		t.Fatalf("the 30 left, on the other node: %v", err)
	}
}
