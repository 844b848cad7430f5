package console

import (
	"net/http"
	"testing"
)

func TestLocalNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/audit?range=24h":           "/ui/audit?range=24h",
		"/ui/records":                   "/ui/records",
		"":                              "/ui/overview",
		"//evil.example/ui/":            "/ui/overview",
		"https://evil.example/ui/":      "/ui/overview",
		"/ui//evil.example":             "/ui/overview",
		"/ui/\\evil":                    "/ui/overview",
		"/ui/x\r\nSet-Cookie: a=b":      "/ui/overview",
		"/v1/clients":                   "/ui/overview",
		"javascript:alert(1)":           "/ui/overview",
		"/ui/audit?next=//evil.example": "/ui/overview",
	} {
		if got := localNext(in); got != want {
			t.Errorf("localNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		name         string
		origin, site string
		want         bool
	}{
		{"this origin", "https://coffer.example:8443", "same-origin", true},
		{"no-referrer null from this page", "null", "same-origin", true},
		{"not a browser", "", "", true},
		{"another origin", "https://evil.example", "", false},
		{"another port", "https://coffer.example:9999", "", false},
		{"plain http", "http://coffer.example:8443", "", false},
		{"cross-site fetch", "null", "cross-site", false},
		{"same-site sibling", "", "same-site", false},
	} {
		r, _ := http.NewRequest(http.MethodPost, "https://coffer.example:8443/ui/login", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		if got := sameOrigin(r); got != tc.want {
			t.Errorf("%s: sameOrigin = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTemplatesParse(t *testing.T) {
	c := &Console{}
	if err := c.parseTemplates(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"login", "mfa", "overview", "audit", "security", "records", "policy", "admin", "account", "error"} {
		if c.pages[name] == nil {
			t.Errorf("no page %q", name)
		}
	}
}
