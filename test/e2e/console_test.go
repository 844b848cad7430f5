package e2e

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/console"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testclock"
)

// browserSession is a cookie-keeping HTTPS client of the console, as a
// browser would be, over the node's real TLS listener.
type browserSession struct {
	t    testing.TB
	n    *node
	c    *http.Client
	last string // the last page's body
}

func (n *node) consoleBrowser() *browserSession {
	n.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		n.t.Fatal(err)
	}
	return &browserSession{t: n.t, n: n, c: &http.Client{Jar: jar, Transport: n.HTTP.Transport, Timeout: 60 * time.Second}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token on the last page.
func (b *browserSession) csrf() string {
	m := csrfRE.FindStringSubmatch(b.last)
	if m == nil {
		b.t.Fatalf("no CSRF token on the page:\n%s", b.last)
	}
	return m[1]
}

func (b *browserSession) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		sb.Write(buf[:k])
		if err != nil {
			break
		}
	}
	b.last = sb.String()
	return resp, b.last
}

func (b *browserSession) get(path string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.n.URL+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// post submits a form as the browser would from a console page: with
// this origin and the given values (add "csrf" to send the token).
func (b *browserSession) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.n.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.n.URL)
	return b.do(req)
}

// cookie returns the session cookie's value ("" when none).
func (b *browserSession) cookie() string {
	u, _ := url.Parse(b.n.URL + "/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == console.CookieName {
			return c.Value
		}
	}
	return ""
}

// signIn signs in through the console's forms; secret is the user's TOTP
// secret ("" for a user without MFA), and code, when not "", is used as
// the second factor instead of a TOTP code.
func (b *browserSession) signIn(username, password, secret, code string) string {
	b.t.Helper()
	b.get("/ui/login")
	resp, body := b.post("/ui/login", url.Values{"csrf": {b.csrf()}, "username": {username}, "password": {password}})
	if secret != "" || code != "" {
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.Path, "/ui/mfa") {
			b.t.Fatalf("after the password: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
		}
		if code == "" {
			var err error
			// The next time step: the enrolment used this one's code.
			if code, err = totp.GenerateCode(secret, time.Now().Add(30*time.Second)); err != nil {
				b.t.Fatal(err)
			}
		}
		resp, body = b.post("/ui/mfa", url.Values{"csrf": {b.csrf()}, "code": {code}})
	}
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/overview" {
		b.t.Fatalf("sign-in did not reach the overview: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	return body
}

// TestConsoleSignIn: the console signs a user in with password and TOTP
// (or a recovery code) over real HTTPS, rotates the session id at each
// step, sets a __Host- cookie with HttpOnly, Secure and SameSite=Strict,
// serves its strict CSP, and ends the session (and its token) on sign-out.
func TestConsoleSignIn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		uid := n.newUser("ops", "admin")
		_, _, tr := n.login("ops", userPassword)
		secret, recovery := n.enrolTOTP(tr.AccessToken, nil)

		b := n.consoleBrowser()
		resp, body := b.get("/ui/overview")
		if resp.Request.URL.Path != "/ui/login" || !strings.Contains(body, `name="password"`) {
			t.Fatalf("signed out, /ui/overview should lead to the sign-in page, got %s", resp.Request.URL)
		}
		h := resp.Header
		if got := h.Get("Content-Security-Policy"); got != console.ContentSecurityPolicy ||
			!strings.Contains(got, "default-src 'none'") || !strings.Contains(got, "frame-ancestors 'none'") ||
			strings.Contains(got, "unsafe") {
			t.Errorf("CSP = %q", got)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("headers: %v", h)
		}
		// The cookie's attributes, as the server set them.
		req, _ := http.NewRequest(http.MethodGet, n.URL+"/ui/login", nil)
		raw, err := n.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw.Body.Close()
		sc := raw.Header.Get("Set-Cookie")
		for _, want := range []string{console.CookieName + "=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
			if !strings.Contains(sc, want) {
				t.Errorf("Set-Cookie %q lacks %q", sc, want)
			}
		}
		if strings.Contains(sc, "Domain=") {
			t.Errorf("Set-Cookie %q has a Domain", sc)
		}

		// A wrong password: refused, without saying which part was wrong.
		b.get("/ui/login")
		anon := b.cookie()
		resp, body = b.post("/ui/login", url.Values{"csrf": {b.csrf()}, "username": {"ops"}, "password": {"wrong"}})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Invalid username, password or code") {
			t.Fatalf("wrong password: %d\n%s", resp.StatusCode, body)
		}
		resp, _ = b.post("/ui/login", url.Values{"csrf": {b.csrf()}, "username": {"ops"}, "password": {userPassword}})
		pending := b.cookie()
		if pending == anon || pending == "" {
			t.Error("the session id did not change after the password")
		}
		if !strings.HasPrefix(resp.Request.URL.Path, "/ui/mfa") {
			t.Fatalf("no second step: %s", resp.Request.URL)
		}
		// A wrong code keeps the user out.
		resp, _ = b.post("/ui/mfa", url.Values{"csrf": {b.csrf()}, "code": {"000000"}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong code: %d", resp.StatusCode)
		}
		code, _ := totp.GenerateCode(secret, time.Now().Add(30*time.Second))
		resp, body = b.post("/ui/mfa", url.Values{"csrf": {b.csrf()}, "code": {code}})
		if resp.Request.URL.Path != "/ui/overview" || !strings.Contains(body, "Session ends") || !strings.Contains(body, ">MFA<") {
			t.Fatalf("after the code: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
		}
		signedIn := b.cookie()
		if signedIn == pending {
			t.Error("the session id did not change after the second factor")
		}

		// Sign-out ends the session: its cookie no longer names one.
		resp, _ = b.post("/ui/logout", url.Values{"csrf": {b.csrf()}})
		if resp.Request.URL.Path != "/ui/login" {
			t.Fatalf("after sign-out: %s", resp.Request.URL)
		}
		old := n.consoleBrowser()
		u, _ := url.Parse(n.URL + "/")
		old.c.Jar.SetCookies(u, []*http.Cookie{{Name: console.CookieName, Value: signedIn, Path: "/"}})
		if resp, _ := old.get("/ui/overview"); resp.Request.URL.Path != "/ui/login" {
			t.Errorf("the signed-out session still works: %s", resp.Request.URL)
		}

		// A recovery code signs in too, once.
		b2 := n.consoleBrowser()
		b2.signIn("ops", userPassword, "", recovery[0])
		for _, path := range []string{"/ui/login", "/ui/overview", "/ui/audit", "/ui/static/app.css"} {
			start := time.Now()
			b2.get(path)
			t.Logf("GET %s: %v (loopback, TLS connection reused)", path, time.Since(start).Round(time.Millisecond))
		}

		// The sign-ins are audited as the user, with the console's address.
		ev := n.auditEvents(t, url.Values{"principal": {uid}})
		var logins int
		for _, e := range ev {
			if e.Action == "login" && e.Decision == "allow" {
				logins++
			}
		}
		if logins < 2 {
			t.Errorf("want the console's sign-ins in the audit log as %s, got %d", uid, logins)
		}
	})
}

// consoleEvent is an audit event as GET /v1/audit/events shows it.
type consoleEvent struct {
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Decision string `json:"decision"`
	SourceIP string `json:"source_ip"`
}

// auditEvents lists the first 1000 audit events matching q through the
// admin client's API.
func (n *node) auditEvents(t testing.TB, q url.Values) []consoleEvent {
	t.Helper()
	q.Set("limit", "1000")
	st, _, b := n.do("GET", "/v1/audit/events?"+q.Encode(), n.Token(n.Init.ClientID, n.Init.ClientSecret), "", nil)
	if st != 200 {
		t.Fatalf("GET /v1/audit/events: %d %s", st, b)
	}
	var page struct {
		Events []consoleEvent `json:"events"`
	}
	mustJSON(t, b, &page)
	return page.Events
}

// TestConsoleCSRF: a state change without the session's CSRF token, with
// another session's token, or from another origin is refused (403) and
// changes nothing; the sign-in form needs its token too.
func TestConsoleCSRF(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		n.newUser("ops2", "admin")
		b := n.consoleBrowser()
		b.signIn("ops2", userPassword, "", "")
		token := b.csrf()
		other := n.consoleBrowser()
		other.get("/ui/login")
		otherToken := other.csrf()

		for name, form := range map[string]url.Values{
			"no token":            {"principal": {"x"}},
			"another's token":     {"principal": {"x"}, "csrf": {otherToken}},
			"a token of the past": {"principal": {"x"}, "csrf": {"AAAA" + token[4:]}},
		} {
			if resp, _ := b.post("/ui/security/lift", form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %d, want 403", name, resp.StatusCode)
			}
		}
		// The right token from another origin.
		req, _ := http.NewRequest(http.MethodPost, n.URL+"/ui/security/lift",
			strings.NewReader(url.Values{"principal": {"x"}, "csrf": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		if resp, _ := b.do(req); resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin: %d, want 403", resp.StatusCode)
		}
		req, _ = http.NewRequest(http.MethodPost, n.URL+"/ui/security/lift",
			strings.NewReader(url.Values{"principal": {"x"}, "csrf": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if resp, _ := b.do(req); resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site: %d, want 403", resp.StatusCode)
		}
		// With the token, from here: done.
		b.get("/ui/security")
		if resp, body := b.post("/ui/security/lift", url.Values{"principal": {"x"}, "csrf": {b.csrf()}}); resp.StatusCode != 200 || !strings.Contains(body, "is lifted") {
			t.Errorf("with the token: %d\n%s", resp.StatusCode, body)
		}
		// The sign-in form without its token.
		fresh := n.consoleBrowser()
		if resp, _ := fresh.post("/ui/login", url.Values{"username": {"ops2"}, "password": {userPassword}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("sign-in without a token: %d, want 403", resp.StatusCode)
		}
	})
}

// TestConsolePolicyEnforced: each view shows what the signed-in user's
// policy allows and nothing else: masked fields masked, denied fields
// absent, denied views refused with the API's own 403, the same audit
// events as the API (as the user); destructive actions need a typed
// confirmation and a fresh sign-in; a policy that would lock the user out
// is refused.
func TestConsolePolicyEnforced(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		st, _, body := n.postJSON("/v1/collections", tok, map[string]any{"name": "customers", "fields": []map[string]any{
			{"name": "name", "type": "string"}, {"name": "email", "type": "email", "searchable": true},
			{"name": "ssn", "type": "ssn"}}})
		if st != 201 {
			t.Fatalf("collection: %d %s", st, body)
		}
		st, _, body = n.postJSON("/v1/collections/customers/records", tok, map[string]any{"owner": "o1", "subject": "subj-1",
			"data": map[string]string{"name": "Ada Lovelace", "email": "ada@example.com", "ssn": "123-45-6789"}})
		if st != 201 {
			t.Fatalf("record: %d %s", st, body)
		}
		var rec struct {
			ID string `json:"id"`
		}
		mustJSON(t, body, &rec)
		policyDoc := `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  support:
    - resources: ["collections/customers"]
      actions: [read, search]
      fields: {email: masked, ssn: deny, "*": plain}
    - resources: ["policy"]
      actions: [read]
`
		if err := n.Admin.PutPolicy(ctx, []byte(policyDoc), "yaml"); err != nil {
			t.Fatal(err)
		}
		supID := n.newUser("helpdesk", "support")

		b := n.consoleBrowser()
		b.signIn("helpdesk", userPassword, "", "")
		resp, page := b.get("/ui/records?c=customers&id=" + rec.ID)
		if resp.StatusCode != 200 {
			t.Fatalf("record view: %d\n%s", resp.StatusCode, page)
		}
		for _, secret := range []string{"ada@example.com", "123-45-6789", "6789"} {
			if strings.Contains(page, secret) {
				t.Errorf("the record page shows %q, which the policy masks or denies", secret)
			}
		}
		if !strings.Contains(page, "Ada Lovelace") || !strings.Contains(page, "not shown to you") || !strings.Contains(page, "@e") {
			t.Errorf("the record page does not show the fields as the policy says:\n%s", page)
		}
		// Search by a field the user sees masked: the API refuses it (a hit
		// would confirm a guess), and so does the console.
		resp, page = b.post("/ui/records/search", url.Values{"csrf": {b.csrf()}, "c": {"customers"}, "field": {"email"}, "value": {"ada@example.com"}})
		if resp.StatusCode != http.StatusForbidden || strings.Contains(page, rec.ID) {
			t.Errorf("search by a masked field: %d", resp.StatusCode)
		}
		// Views the policy does not grant: the API's 403, nothing listed.
		for _, path := range []string{"/ui/audit", "/ui/security"} {
			resp, page = b.get(path)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Not allowed") {
				t.Errorf("%s as support: %d", path, resp.StatusCode)
			}
		}
		_, page = b.get("/ui/admin")
		if !strings.Contains(page, "Clients are not listed for you") || strings.Contains(page, n.Init.ClientID) {
			t.Errorf("admin page as support lists clients")
		}
		b.get("/ui/overview")
		if resp, page = b.post("/ui/audit/verify", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != 200 || !strings.Contains(page, "Not verified") {
			t.Errorf("verify now as support: %d, want the API's refusal on the page", resp.StatusCode)
		}
		b.get("/ui/records")
		resp, _ = b.post("/ui/records/erase", url.Values{"csrf": {b.csrf()}, "subject": {"subj-1"}, "confirm": {"subj-1"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("erase as support: %d, want 403", resp.StatusCode)
		}

		// The console's reads are in the audit log as the user, as the API's are.
		var sawRead, sawDenied bool
		for _, e := range n.auditEvents(t, url.Values{"principal": {supID}}) {
			if e.Action == "read" && e.Resource == "collections/customers" && e.Decision == "allow" {
				sawRead = true
			}
			if e.Resource == "audit" && e.Decision == "deny" {
				sawDenied = true
			}
		}
		if !sawRead || !sawDenied {
			t.Errorf("audit events as the support user: read %v, denied audit read %v", sawRead, sawDenied)
		}

		// An admin: a typed confirmation, then a fresh sign-in, for an erasure.
		adminID := n.newUser("root", "admin")
		a := n.consoleBrowser()
		a.signIn("root", userPassword, "", "")
		a.get("/ui/overview")
		if resp, page = a.post("/ui/audit/verify", url.Values{"csrf": {a.csrf()}}); resp.StatusCode != 200 || !strings.Contains(page, "intact") ||
			strings.Contains(page, "NOT INTACT") {
			t.Errorf("verify now as admin: %d\n%s", resp.StatusCode, page)
		}
		a.get("/ui/records")
		resp, page = a.post("/ui/records/erase", url.Values{"csrf": {a.csrf()}, "subject": {"subj-1"}, "confirm": {"subj-2"}})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, "exactly") {
			t.Errorf("erase with a wrong confirmation: %d", resp.StatusCode)
		}
		resp, page = a.post("/ui/records/erase", url.Values{"csrf": {a.csrf()}, "subject": {"subj-1"}, "confirm": {"subj-1"}})
		if resp.StatusCode != 200 || !strings.Contains(page, "erased") {
			t.Errorf("erase: %d\n%s", resp.StatusCode, page)
		}
		if st, _, _ := n.do("GET", "/v1/collections/customers/records/"+rec.ID, tok, "", nil); st != http.StatusNotFound {
			t.Errorf("the erased subject's record: %d, want 404", st)
		}

		// The policy editor: every problem listed, a self-lockout refused,
		// a good document saved.
		a.get("/ui/policy")
		resp, page = a.post("/ui/policy", url.Values{"csrf": {a.csrf()}, "format": {"yaml"}, "doc": {"roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [bogus]\n"}})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, "bogus") {
			t.Errorf("a bad policy: %d", resp.StatusCode)
		}
		lockout := "roles:\n  admin:\n    - resources: [\"collections/*\"]\n      actions: [\"*\"]\n"
		resp, page = a.post("/ui/policy", url.Values{"csrf": {a.csrf()}, "format": {"yaml"}, "doc": {lockout}})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, "lock you out") {
			t.Errorf("a self-lockout: %d", resp.StatusCode)
		}
		got, err := n.Admin.GetPolicy(ctx)
		if err != nil || string(got) != policyDoc {
			t.Errorf("the policy changed: %v\n%s", err, got)
		}
		resp, page = a.post("/ui/policy/check", url.Values{"csrf": {a.csrf()}, "id": {"u9"}, "kind": {"user"}, "roles": {"support"},
			"action": {"read"}, "resource": {"collections/customers"}, "fields": {"email, ssn"}})
		if resp.StatusCode != 200 || !strings.Contains(page, "support[0]") || !strings.Contains(page, "masked") {
			t.Errorf("explain: %d\n%s", resp.StatusCode, page)
		}
		tests := "tests:\n  - name: support reads\n    principal: {id: u1, kind: user, roles: [support]}\n    action: read\n    resource: collections/customers\n    expect: allow\n    fields: {ssn: plain}\n"
		resp, page = a.post("/ui/policy/test", url.Values{"csrf": {a.csrf()}, "format": {"yaml"}, "doc": {policyDoc}, "tests": {tests}})
		if resp.StatusCode != 200 || !strings.Contains(page, "FAIL") {
			t.Errorf("policy tests: %d", resp.StatusCode)
		}
		resp, _ = a.post("/ui/policy", url.Values{"csrf": {a.csrf()}, "format": {"yaml"}, "doc": {policyDoc + "  auditor:\n    - resources: [audit]\n      actions: [read]\n"}})
		if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/policy" {
			t.Errorf("save: %d %s", resp.StatusCode, resp.Request.URL)
		}
		if got, _ := n.Admin.GetPolicy(ctx); !strings.Contains(string(got), "auditor") {
			t.Errorf("the saved policy is not in force:\n%s", got)
		}

		// Suspend the support user by hand: its console refuses it everything
		// (the API's answer), on every page; lifted, it works again.
		a.get("/ui/security")
		resp, page = a.post("/ui/security/suspend", url.Values{"csrf": {a.csrf()}, "principal": {supID}, "duration": {"1h"}})
		if resp.StatusCode != 200 || !strings.Contains(page, "is suspended until") || !strings.Contains(page, supID) {
			t.Fatalf("suspend: %d\n%s", resp.StatusCode, page)
		}
		if resp, page = b.get("/ui/records?c=customers&id=" + rec.ID); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "suspended") {
			t.Errorf("the suspended user's console: %d", resp.StatusCode)
		}
		if resp, _ = a.post("/ui/security/suspend", url.Values{"csrf": {a.csrf()}, "principal": {adminID}}); resp.StatusCode != http.StatusConflict {
			t.Errorf("suspending oneself: %d, want 409", resp.StatusCode)
		}
		a.get("/ui/security")
		if resp, page = a.post("/ui/security/lift", url.Values{"csrf": {a.csrf()}, "principal": {supID}}); resp.StatusCode != 200 || !strings.Contains(page, "Nobody is suspended") {
			t.Errorf("lift: %d", resp.StatusCode)
		}
		if resp, _ = b.get("/ui/records"); resp.StatusCode != http.StatusOK {
			t.Errorf("the lifted user's console: %d", resp.StatusCode)
		}

		// Clients: a secret shown once, on the answer to the action.
		resp, page = a.post("/ui/admin/clients", url.Values{"csrf": {a.csrf()}, "name": {"billing"}, "roles": {"support"}})
		if resp.StatusCode != 200 || !strings.Contains(page, "shown this once") {
			t.Errorf("create client: %d", resp.StatusCode)
		}
		if _, again := a.get("/ui/admin"); strings.Contains(again, "shown this once") {
			t.Error("the secret is shown again")
		}
	})
}

// TestConsoleSessionEnds: a console session ends after its idle timeout,
// and at its access token's expiry however busy it is; a destructive
// action asks a sign-in older than auth.reauth_max_age to sign in again
// (on a clock the test moves).
func TestConsoleSessionEnds(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			clock := testclock.New(time.Now())
			n := startWith(t, b, app.Options{Now: clock.Now})
			n.newUser("night", "admin")

			idle := n.consoleBrowser()
			idle.signIn("night", userPassword, "", "")
			clock.Advance(console.DefaultIdleTimeout + time.Second)
			if resp, _ := idle.get("/ui/overview"); resp.Request.URL.Path != "/ui/login" {
				t.Errorf("after the idle timeout: %s, want the sign-in page", resp.Request.URL)
			}

			busy := n.consoleBrowser()
			busy.signIn("night", userPassword, "", "")
			// Used every 4 minutes: never idle, but fresh only at first.
			clock.Advance(6 * time.Minute)
			busy.get("/ui/records")
			resp, page := busy.post("/ui/records/erase", url.Values{"csrf": {busy.csrf()}, "subject": {"s-9"}, "confirm": {"s-9"}})
			if resp.Request.URL.Path != "/ui/reauth" || !strings.Contains(page, "recent sign-in") {
				t.Fatalf("an erasure 6 minutes after sign-in: %s, want the re-authentication page", resp.Request.URL)
			}
			before := busy.cookie()
			resp, _ = busy.post("/ui/login", url.Values{"csrf": {busy.csrf()}, "password": {userPassword}, "next": {"/ui/records"}})
			if resp.Request.URL.Path != "/ui/records" || busy.cookie() == before {
				t.Fatalf("re-authentication: %s (session id rotated: %v)", resp.Request.URL, busy.cookie() != before)
			}
			resp, page = busy.post("/ui/records/erase", url.Values{"csrf": {busy.csrf()}, "subject": {"s-9"}, "confirm": {"s-9"}})
			if resp.StatusCode != 200 || !strings.Contains(page, "erased") {
				t.Fatalf("the erasure after re-authentication: %d", resp.StatusCode)
			}
			for i := 0; i < 4; i++ {
				clock.Advance(4 * time.Minute)
				busy.get("/ui/overview")
			}
			// 16 minutes after the re-authentication: its token (15m) has expired.
			if resp, _ := busy.get("/ui/overview"); resp.Request.URL.Path != "/ui/login" {
				t.Errorf("after the token's expiry: %s, want the sign-in page", resp.Request.URL)
			}
		})
	}
}
