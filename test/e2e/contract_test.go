package e2e

import (
	"net/url"
	"strings"
	"testing"
)

// TestContractPublicAnswers: the public documents hold their schemas (the
// harness checks every answer), and RFC 8414 metadata names the
// introspection endpoint, which answers a live token as active (#20).
func TestContractPublicAnswers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		for _, path := range []string{"/healthz", "/readyz", "/v1/openapi.json", "/.well-known/jwks.json"} {
			if st, _, b := n.do("GET", path, "", "", nil); st != 200 {
				t.Fatalf("GET %s: %d %s", path, st, b)
			}
		}
		st, _, b := n.do("GET", "/.well-known/oauth-authorization-server", "", "", nil)
		if st != 200 {
			t.Fatalf("metadata: %d %s", st, b)
		}
		var md struct {
			Introspection string `json:"introspection_endpoint"`
		}
		mustJSON(t, b, &md)
		u, err := url.Parse(md.Introspection)
		if err != nil || u.Path != "/v1/oauth/introspect" {
			t.Fatalf("introspection_endpoint %q", md.Introspection)
		}
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		st, _, b = n.do("POST", u.Path, tok, "application/x-www-form-urlencoded", strings.NewReader("token="+url.QueryEscape(tok)))
		if st != 200 || !strings.Contains(string(b), `"active":true`) {
			t.Fatalf("introspect: %d %s", st, b)
		}
	})
}

// TestContractTOTPEnrolment: enrolment answers the secret, the otpauth URL
// and the recovery codes (as its schema says), and confirming answers 204
// with no body (#20).
func TestContractTOTPEnrolment(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		n.newUser("contract-user")
		st, _, tr := n.login("contract-user", userPassword)
		if st != 200 {
			t.Fatalf("login: %d", st)
		}
		secret, codes := n.enrolTOTP(tr.AccessToken, nil)
		if secret == "" || len(codes) != 10 {
			t.Fatalf("enrolment: secret %t, %d recovery codes", secret != "", len(codes))
		}
	})
}
