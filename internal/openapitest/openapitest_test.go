package openapitest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi-validator/schema_validation"
)

func header(ct string) http.Header { return http.Header{"Content-Type": {ct}} }

func TestCheck(t *testing.T) {
	c, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	req := func(method, path string) *http.Request {
		r, err := http.NewRequest(method, "https://127.0.0.1:1"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	problem := `{"type":"https://coffer.dev/problems/not_found","title":"Not Found","status":404,"detail":"no such record","request_id":"r1"}`
	for _, tc := range []struct {
		name   string
		r      *http.Request
		status int
		ct     string
		body   string
		bad    string // a part of the first mismatch; "" when it holds
	}{
		{"ok/token", req("POST", "/v1/oauth/token"), 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":900}`, ""},
		{"ok/problem", req("GET", "/v1/collections/c/records/x"), 404, "application/problem+json", problem, ""},
		{"ok/unknown-path-problem", req("GET", "/v1/nowhere"), 404, "application/problem+json", problem, ""},
		{"fail/extra-field", req("POST", "/v1/oauth/token"), 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":900,"x":1}`, "x"},
		{"fail/missing-field", req("POST", "/v1/collections/c/records"), 201, "application/json", `{}`, "id"},
		{"fail/undocumented-status", req("GET", "/healthz"), 418, "application/json", `{}`, "418"},
		{"fail/unknown-path-success", req("GET", "/v1/nowhere"), 200, "application/json", `{}`, "does not name"},
		{"fail/unknown-path-not-problem", req("GET", "/v1/nowhere"), 404, "text/plain", `404 page not found`, "problem+json"},
		{"ok/console-is-another-contract", req("GET", "/ui/login"), 200, "text/html", `<html>`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.Check(tc.r, tc.status, header(tc.ct), []byte(tc.body))
			switch {
			case tc.bad == "" && len(got) > 0:
				t.Fatalf("mismatch on a good answer: %q", got)
			case tc.bad != "" && len(got) == 0:
				t.Fatal("no mismatch on a bad answer")
			case tc.bad != "" && !strings.Contains(strings.Join(got, "\n"), tc.bad):
				t.Fatalf("mismatch %q does not name %q", got, tc.bad)
			}
		})
	}
}

// TestDocumentIsValid: the served document is itself a valid OpenAPI 3.1
// document (so a schema typo cannot silently check nothing).
func TestDocumentIsValid(t *testing.T) {
	c, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	if ok, errs := schema_validation.ValidateOpenAPIDocument(c.doc); !ok {
		for _, e := range errs {
			t.Errorf("%s: %s", e.Message, e.Reason)
		}
	}
}
