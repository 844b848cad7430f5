package e2e

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestOpenAPICoversEveryRoute: every registered route is in the served
// OpenAPI document, and every documented operation is routed.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	st, _, b := n.do("GET", "/v1/openapi.json", "", "", nil)
	if st != 200 {
		t.Fatalf("openapi: %d", st)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	mustJSON(t, b, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	routed := map[string]bool{}
	for _, r := range n.Srv.Routes() {
		method, path, _ := strings.Cut(r, " ")
		routed[strings.ToLower(method)+" "+path] = true
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %s is not documented", r)
		}
	}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			var o struct {
				SealedOnly bool `json:"x-coffer-sealed-only"`
			}
			mustJSON(t, ops[m], &o)
			if o.SealedOnly {
				// A sealed server's route: TestShamirSealUnseal drives it.
				continue
			}
			if !routed[m+" "+path] {
				t.Errorf("documented %s %s is not routed", strings.ToUpper(m), path)
			}
		}
	}
}

// TestInspectAndRedact: findings with offsets and types, never the text;
// redaction masks or replaces each finding.
func TestInspectAndRedact(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	text := "card 4111 1111 1111 1111, mail ada@example.com, ssn 123-45-6789, not a card 4111111111111112"
	st, _, b := n.postJSON("/v1/inspect", tok, map[string]string{"text": text})
	if st != 200 {
		t.Fatalf("inspect: %d %s", st, b)
	}
	if strings.Contains(string(b), "ada@example.com") || strings.Contains(string(b), "4111") {
		t.Fatalf("inspect echoes the text: %s", b)
	}
	var out struct {
		Findings []struct {
			Type       string  `json:"type"`
			Start      int     `json:"start"`
			End        int     `json:"end"`
			Confidence float64 `json:"confidence"`
		} `json:"findings"`
	}
	mustJSON(t, b, &out)
	if len(out.Findings) != 3 || out.Findings[0].End <= out.Findings[0].Start || out.Findings[0].Confidence <= 0 {
		t.Fatalf("findings: %s", b)
	}
	st, _, b = n.postJSON("/v1/redact", tok, map[string]string{"text": text, "mode": "placeholder"})
	if st != 200 {
		t.Fatalf("redact: %d %s", st, b)
	}
	var red struct {
		Text string `json:"text"`
	}
	mustJSON(t, b, &red)
	if strings.Contains(red.Text, "ada@example.com") || strings.Contains(red.Text, "123-45-6789") ||
		!strings.Contains(red.Text, "4111111111111112") || !regexp.MustCompile(`\[[A-Z_]+\]`).MatchString(red.Text) {
		t.Fatalf("redacted text: %q", red.Text)
	}
}

// TestPolicyProblems: a policy that does not compile is refused with 422
// listing every problem, and the old policy stays in force.
func TestPolicyProblems(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	bad := `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  support:
    - resources: ["collections/customers"]
      actions: [read, fly]
      when: resource.ownr == principal.id
`
	st, _, b := n.do("PUT", "/v1/policy", tok, "application/yaml", strings.NewReader(bad))
	if st != 422 {
		t.Fatalf("bad policy: %d %s", st, b)
	}
	var p struct {
		Problems []string `json:"problems"`
	}
	mustJSON(t, b, &p)
	joined := strings.Join(p.Problems, "\n")
	if len(p.Problems) < 2 || !strings.Contains(joined, "fly") || !strings.Contains(joined, "ownr") {
		t.Fatalf("problems: %q", p.Problems)
	}
	// The old (bootstrap) policy still lets the admin work.
	if st, _, _ := n.do("GET", "/v1/collections", tok, "", nil); st != http.StatusOK {
		t.Fatalf("admin after a refused policy: %d", st)
	}
	st, _, b = n.do("GET", "/v1/policy", tok, "", nil)
	if st != 200 || strings.Contains(string(b), "fly") {
		t.Fatalf("policy in force changed: %d %s", st, b)
	}
}

// Every answer over HTTPS carries the security headers: a success, a
// refusal, an unrouted path, and a sealed server's answers alike.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	want := map[string]string{
		"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
		"X-Content-Type-Options":    "nosniff",
		"Cache-Control":             "no-store",
		"X-Frame-Options":           "DENY",
		"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'",
		"Referrer-Policy":           "no-referrer",
	}
	for _, tc := range []struct{ method, path, tok string }{
		{"GET", "/healthz", ""},
		{"GET", "/v1/collections", tok},
		{"GET", "/v1/collections", ""},
		{"GET", "/no/such/path", tok},
		{"DELETE", "/healthz", ""},
	} {
		st, h, _ := n.do(tc.method, tc.path, tc.tok, "", nil)
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("%s %s (%d): %s = %q, want %q", tc.method, tc.path, st, k, h.Get(k), v)
			}
		}
	}
}
