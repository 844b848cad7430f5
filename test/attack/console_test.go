package attack

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/console"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// consoleUser is a browser of the console: a cookie jar over the node's TLS.
type consoleUser struct {
	t    *testing.T
	n    *node
	c    *http.Client
	last string
}

func (n *node) consoleUser(t *testing.T, noRedirect bool) *consoleUser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Transport: n.HTTP.Transport}
	if noRedirect {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &consoleUser{t: t, n: n, c: c}
}

var consoleCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (u *consoleUser) do(method, path string, form url.Values) *http.Response {
	u.t.Helper()
	var body io.Reader
	if form != nil {
		if m := consoleCSRF.FindStringSubmatch(u.last); m != nil && !form.Has("csrf") {
			form.Set("csrf", m[1])
		}
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u.n.URL+path, body)
	if err != nil {
		u.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := u.c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	u.last = string(b)
	return resp
}

func (u *consoleUser) cookie() string {
	pu, _ := url.Parse(u.n.URL + "/")
	for _, c := range u.c.Jar.Cookies(pu) {
		if c.Name == console.CookieName {
			return c.Value
		}
	}
	return ""
}

func (u *consoleUser) setCookie(v string) {
	pu, _ := url.Parse(u.n.URL + "/")
	u.c.Jar.SetCookies(pu, []*http.Cookie{{Name: console.CookieName, Value: v, Path: "/"}})
}

// TestConsoleAttacks: the console against a hostile browser and hostile
// data. A session id the attacker knows (planted, or chosen) never
// becomes a signed-in session; the sign-in's next parameter never leads
// off the console; markup in stored data (a record value, a client name,
// a filter) is shown as text, never run.
func TestConsoleAttacks(t *testing.T) {
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, setup{})
	const password = "correct horse battery staple 42"
	n.must(t, 201, "POST", "/v1/users", n.admin, map[string]any{"username": "victim", "password": password, "roles": []string{"admin"}}, nil)

	t.Run("session fixation", func(t *testing.T) {
		// A planted id the server never issued is not adopted.
		u := n.consoleUser(t, false)
		u.setCookie("attacker-chosen-session-id")
		u.do("GET", "/ui/login", nil)
		if u.cookie() == "attacker-chosen-session-id" {
			t.Error("the server kept a session id it did not issue")
		}
		// An id the attacker got from the server (an anonymous session)
		// and planted in the victim's browser stops naming anything once
		// the victim signs in.
		attacker := n.consoleUser(t, false)
		attacker.do("GET", "/ui/login", nil)
		planted := attacker.cookie()
		u.setCookie(planted)
		u.last = attacker.last // the victim's form carries the planted session's token
		resp := u.do("POST", "/ui/login", url.Values{"username": {"victim"}, "password": {password}})
		if resp.Request.URL.Path != "/ui/overview" {
			t.Fatalf("sign-in: %s", resp.Request.URL)
		}
		if u.cookie() == planted {
			t.Error("the session id did not change at sign-in")
		}
		if resp := attacker.do("GET", "/ui/overview", nil); resp.Request.URL.Path != "/ui/login" {
			t.Errorf("the planted id is signed in: %s", resp.Request.URL)
		}
	})

	t.Run("open redirect", func(t *testing.T) {
		for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "/ui/\r\nLocation: https://evil.example",
			"javascript:alert(1)", "/v1/clients", "/ui//evil.example"} {
			u := n.consoleUser(t, true)
			u.do("GET", "/ui/login?next="+url.QueryEscape(next), nil)
			resp := u.do("POST", "/ui/login", url.Values{"username": {"victim"}, "password": {password}, "next": {next}})
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/") || strings.HasPrefix(loc, "/ui//") ||
				strings.ContainsAny(loc, "\r\n\\") {
				t.Errorf("next %q: %d Location %q, want a console path", next, resp.StatusCode, loc)
			}
		}
	})

	t.Run("markup in stored data", func(t *testing.T) {
		const xss = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
		n.must(t, 201, "POST", "/v1/collections", n.admin, map[string]any{"name": "people", "fields": []map[string]any{{"name": "note", "type": "string"}}}, nil)
		var rec struct {
			ID string `json:"id"`
		}
		n.must(t, 201, "POST", "/v1/collections/people/records", n.admin, map[string]any{"owner": xss, "data": map[string]string{"note": xss}}, &rec)
		n.must(t, 201, "POST", "/v1/clients", n.admin, map[string]any{"name": "c" + strings.ReplaceAll(xss, " ", ""), "roles": []string{}}, nil)
		u := n.consoleUser(t, false)
		u.do("GET", "/ui/login", nil)
		u.do("POST", "/ui/login", url.Values{"username": {"victim"}, "password": {password}})
		for _, path := range []string{"/ui/records?c=people&id=" + rec.ID, "/ui/admin",
			"/ui/audit?range=1h&principal=" + url.QueryEscape(xss) + "&resource=" + url.QueryEscape(xss)} {
			resp := u.do("GET", path, nil)
			if resp.StatusCode >= 500 {
				t.Errorf("%s: %d", path, resp.StatusCode)
			}
			if strings.Contains(u.last, "<script>alert") || strings.Contains(u.last, "<img src=x") {
				t.Errorf("%s shows stored markup unescaped", path)
			}
		}
	})
}
