package attack

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// problemCode is the problem type's last segment for each status.
var problemCode = map[int]string{
	400: "malformed", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
	409: "conflict", 413: "too_large", 415: "unsupported_media", 422: "invalid", 429: "rate_limited", 503: "unavailable",
}

// problem is an RFC 9457 body as Coffer writes it.
type problem struct {
	Type      string   `json:"type"`
	Title     string   `json:"title"`
	Status    int      `json:"status"`
	Detail    string   `json:"detail"`
	RequestID string   `json:"request_id"`
	Problems  []string `json:"problems"`
}

// wantProblem checks that r is exactly the problem+json refusal with this
// status and detail, that it echoes no submitted value (apart from what
// detail itself names) and, for a 401, that it challenges with Bearer.
func wantProblem(t testing.TB, r reply, status int, detail string) problem {
	t.Helper()
	return wantTypedProblem(t, r, status, problemCode[status], detail)
}

// wantTypedProblem is wantProblem for a problem of a type more specific
// than its status (https://coffer.dev/problems/TYPE).
func wantTypedProblem(t testing.TB, r reply, status int, typ, detail string) problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %s, want %d %q", r, status, detail)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json (body %s)", ct, r.body)
	}
	var p problem
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if want := "https://coffer.dev/problems/" + typ; p.Type != want {
		t.Errorf("type %q, want %q", p.Type, want)
	}
	if p.Title != http.StatusText(status) || p.Status != status {
		t.Errorf("title/status %q/%d, want %q/%d", p.Title, p.Status, http.StatusText(status), status)
	}
	if p.Detail != detail {
		t.Errorf("detail %q, want %q", p.Detail, detail)
	}
	if len(p.RequestID) != 24 || p.RequestID != r.header.Get("X-Request-Id") {
		t.Errorf("request_id %q does not match X-Request-Id %q", p.RequestID, r.header.Get("X-Request-Id"))
	}
	if status == 401 {
		if c := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer ") {
			t.Errorf("401 without a Bearer challenge: WWW-Authenticate %q", c)
		}
	}
	noEchoIn(t, r, detail)
	return p
}

// wantProblems is wantProblem for a 422 that lists its problems.
func wantProblems(t testing.TB, r reply, detail string, problems ...string) {
	t.Helper()
	p := wantProblem(t, r, 422, detail)
	if strings.Join(p.Problems, "\n") != strings.Join(problems, "\n") {
		t.Errorf("problems %q, want %q", p.Problems, problems)
	}
}

// want401 checks the refusal of a bearer token.
func want401(t testing.TB, r reply) {
	t.Helper()
	wantProblem(t, r, 401, "invalid or expired access token")
	if c := r.header.Get("WWW-Authenticate"); c != `Bearer realm="coffer", error="invalid_token"` {
		t.Errorf("WWW-Authenticate %q", c)
	}
}

// wantOAuth checks an RFC 6749 §5.2 error answer.
func wantOAuth(t testing.TB, r reply, status int, code, description string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e map[string]string
	mustJSON(t, r.body, &e)
	if len(e) != 2 || e["error"] != code || e["error_description"] != description {
		t.Errorf("OAuth error %v, want %s %q", e, code, description)
	}
	noEchoIn(t, r, "")
}

// wantJSON checks a 2xx JSON answer and decodes it.
func wantJSON(t testing.TB, r reply, status int, out any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %s, want %d", r, status)
	}
	if out != nil {
		mustJSON(t, r.body, out)
	}
}

// echoMarkers are submitted values no refusal or log line may repeat:
// every SQL payload long enough not to occur by chance, and the marker
// planted in values.
func echoMarkers() []string {
	out := []string{marker}
	for _, p := range sqlPayloads {
		if len(p) >= 8 {
			out = append(out, p)
		}
	}
	return out
}

// marker is planted in submitted values so echoes can be found.
const marker = "zqMARKER7x"

// noEchoIn fails if r's body repeats a submitted value, raw or JSON-escaped,
// except where the expected detail names it (field names are echoed by
// design, truncated; values never are).
func noEchoIn(t testing.TB, r reply, allowed string) {
	t.Helper()
	body := string(r.body)
	for _, m := range echoMarkers() {
		if strings.Contains(allowed, m) {
			continue
		}
		esc, _ := json.Marshal(m)
		if strings.Contains(body, m) || (utf8.ValidString(m) && strings.Contains(body, strings.Trim(string(esc), `"`))) {
			t.Errorf("refusal echoes the submitted value %q: %s", m, body)
		}
	}
}

// knownLogEchoes are log messages known to repeat a submitted value,
// reported by the suite and left to the server's owners.
var knownLogEchoes = map[string]string{}

// noEchoInLog fails if the server's log repeats a submitted value.
func noEchoInLog(t testing.TB, n *node) {
	t.Helper()
	known := map[string]bool{}
	for _, line := range strings.Split(n.Logs.String(), "\n") {
		for _, m := range echoMarkers() {
			esc, _ := json.Marshal(m)
			if !strings.Contains(line, m) && !(utf8.ValidString(m) && strings.Contains(line, strings.Trim(string(esc), `"`))) {
				continue
			}
			bug := ""
			for msg, why := range knownLogEchoes {
				if strings.Contains(line, msg) {
					bug = why
				}
			}
			if bug == "" {
				t.Errorf("server log echoes the submitted value %q: %s", m, line)
			} else if !known[bug] {
				known[bug] = true
				t.Logf("BUG: %s: %s", bug, line)
			}
		}
	}
}
