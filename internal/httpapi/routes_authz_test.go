package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/inspect"
	"github.com/cofferhq/coffer/internal/policystore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// tokens is the one fake: an Authenticator that knows two bearer tokens,
// an admin's and a reader's (a role the bootstrap policy grants nothing).
type tokens map[string]*coffer.Principal

func (t tokens) Authenticate(_ context.Context, tok string) (*coffer.Principal, error) {
	if p, ok := t[tok]; ok {
		return p, nil
	}
	return nil, coffer.Errorf(coffer.EUNAUTHENTICATED, "invalid token")
}

func (t tokens) AuthenticateClientCert(context.Context, string) (*coffer.Principal, error) {
	return nil, coffer.Errorf(coffer.EUNAUTHENTICATED, "no certificates here")
}

// entries records the audit entries the server writes.
type entries struct {
	mu  sync.Mutex
	all []httpapi.Entry
}

func (e *entries) Audit(_ context.Context, en httpapi.Entry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, en)
	return nil
}

func (e *entries) last() httpapi.Entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.all[len(e.all)-1]
}

// newServer serves the policy, security and inspect routes over the real
// policy holder (bootstrap policy: role admin may do everything), the real
// detector on a SQLite store in t.TempDir(), and the real inspector.
func newServer(t *testing.T) (*httptest.Server, *entries) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, storetest.SQLiteDSN(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	pol := policystore.New(db, time.Now, log)
	if err := pol.Load(ctx); err != nil {
		t.Fatal(err)
	}
	det := detect.New(detect.Config{}, detect.Deps{Store: db, Logger: log, Now: time.Now})
	au := &entries{}
	api := httpapi.New(httpapi.Config{
		Auth: tokens{
			"admin":  {ID: "cl_admin", Kind: "client", Roles: []string{"admin"}},
			"reader": {ID: "cl_reader", Kind: "client", Roles: []string{"reader"}},
		},
		Policies: pol,
		Detector: det,
		Security: detect.NewResponse(det, pol),
		Inspect:  inspect.New(pol),
		Audit:    au,
		Logger:   log,
	})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv, au
}

type answer struct {
	status int
	ctype  string
	body   map[string]any
}

func call(t *testing.T, srv *httptest.Server, method, path, token, body string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type")}
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 && strings.Contains(a.ctype, "json") {
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %q", method, path, b)
		}
	}
	return a
}

// wantProblem checks a problem+json answer of status whose type ends in typ.
func wantProblem(t *testing.T, what string, a answer, status int, typ string) {
	t.Helper()
	if a.status != status || a.ctype != "application/problem+json" {
		t.Fatalf("%s: %d %q, want %d problem+json (%v)", what, a.status, a.ctype, status, a.body)
	}
	if got, _ := a.body["type"].(string); !strings.HasSuffix(got, "/"+typ) {
		t.Fatalf("%s: problem type %q, want …/%s", what, got, typ)
	}
	if got, _ := a.body["status"].(float64); int(got) != status {
		t.Fatalf("%s: problem status %v, want %d", what, a.body["status"], status)
	}
}

// The decision is the use case's, and the server maps it: no token 401,
// a role the policy grants nothing 403 (audited as a denial), and for a
// denied caller the refusal comes before the request is read, so a
// malformed body tells it nothing.
func TestPolicyRoutesDecideThenDecode(t *testing.T) {
	srv, au := newServer(t)
	wantProblem(t, "no token", call(t, srv, "GET", "/v1/policy", "", ""), 401, "unauthenticated")
	wantProblem(t, "reader reads policy", call(t, srv, "GET", "/v1/policy", "reader", ""), 403, "forbidden")
	if e := au.last(); e.Note.Decision != "deny" || e.Note.Action != "read" || e.Note.Resource != "policy" {
		t.Fatalf("denied read audited as %+v", e.Note)
	}
	wantProblem(t, "reader, malformed check", call(t, srv, "POST", "/v1/policy/check", "reader", "{"), 403, "forbidden")
	wantProblem(t, "admin, malformed check", call(t, srv, "POST", "/v1/policy/check", "admin", "{"), 400, "malformed")
	wantProblem(t, "admin, check without action", call(t, srv, "POST", "/v1/policy/check", "admin", `{"resource":"policy"}`), 422, "invalid")

	a := call(t, srv, "POST", "/v1/policy/check", "admin",
		`{"principal":{"id":"u1","kind":"user","roles":["admin"]},"action":"read","resource":"collections/c","fields":["email"]}`)
	if a.status != 200 || a.body["allowed"] != true || a.body["rule"] == "" {
		t.Fatalf("check: %d %v", a.status, a.body)
	}
	if f, _ := a.body["fields"].(map[string]any); f["email"] == nil {
		t.Fatalf("check names no view of the field asked about: %v", a.body)
	}
	a = call(t, srv, "POST", "/v1/policy/check", "admin", `{"principal":{"id":"u2","roles":["reader"]},"action":"read","resource":"policy"}`)
	if a.status != 200 || a.body["allowed"] != false || a.body["fields"] != nil {
		t.Fatalf("check of a denial: %d %v", a.status, a.body)
	}
	if e := au.last(); e.Note.Decision != "allow" || e.Note.Resource != "policy" {
		t.Fatalf("explained check audited as %+v", e.Note)
	}
	if a := call(t, srv, "GET", "/v1/policy", "admin", ""); a.status != 200 {
		t.Fatalf("admin reads policy: %d", a.status)
	}
}

func TestSecurityRoutes(t *testing.T) {
	srv, au := newServer(t)
	wantProblem(t, "reader suspends", call(t, srv, "PUT", "/v1/security/suspensions/cl_x", "reader", `{"duration":"1h"}`), 403, "forbidden")
	wantProblem(t, "reader, bad limit", call(t, srv, "GET", "/v1/security/events?limit=0", "reader", ""), 403, "forbidden")
	wantProblem(t, "admin, bad limit", call(t, srv, "GET", "/v1/security/events?limit=0", "admin", ""), 422, "invalid")
	wantProblem(t, "admin suspends itself", call(t, srv, "PUT", "/v1/security/suspensions/cl_admin", "admin", ""), 409, "conflict")
	if e := au.last(); e.Note.Decision != "deny" || e.Note.Reason == "" {
		t.Fatalf("self-suspension audited as %+v", e.Note)
	}
	wantProblem(t, "too long", call(t, srv, "PUT", "/v1/security/suspensions/cl_x", "admin", `{"duration":"721h"}`), 422, "invalid")
	wantProblem(t, "unknown field", call(t, srv, "PUT", "/v1/security/suspensions/cl_x", "admin", `{"for":"1h"}`), 422, "invalid")

	a := call(t, srv, "PUT", "/v1/security/suspensions/cl_reader", "admin", `{"duration":"2h"}`)
	if a.status != 200 || a.body["principal"] != "cl_reader" || a.body["until"] == nil {
		t.Fatalf("suspend: %d %v", a.status, a.body)
	}
	wantProblem(t, "suspended reader", call(t, srv, "GET", "/v1/policy", "reader", ""), 403, "forbidden")
	a = call(t, srv, "GET", "/v1/security/suspensions", "admin", "")
	if list, _ := a.body["suspensions"].([]any); a.status != 200 || len(list) != 1 {
		t.Fatalf("suspensions: %d %v", a.status, a.body)
	}
	if a := call(t, srv, "DELETE", "/v1/security/suspensions/cl_reader", "admin", ""); a.status != 204 {
		t.Fatalf("lift: %d %v", a.status, a.body)
	}
	if e := au.last(); e.Note.Count != 1 || len(e.Note.Targets) != 1 {
		t.Fatalf("lift audited as %+v", e.Note)
	}
	a = call(t, srv, "GET", "/v1/security/events", "admin", "")
	if evs, ok := a.body["events"].([]any); a.status != 200 || !ok || evs == nil {
		t.Fatalf("events: %d %v", a.status, a.body)
	}
}

func TestInspectRoutes(t *testing.T) {
	srv, _ := newServer(t)
	wantProblem(t, "reader inspects", call(t, srv, "POST", "/v1/inspect", "reader", `{"text":"x"}`), 403, "forbidden")
	// inspect reads its body before it decides: a body of the wrong shape
	// is refused as such, whoever sends it.
	wantProblem(t, "wrong type", call(t, srv, "POST", "/v1/inspect", "reader", `{"text":1}`), 422, "invalid")
	wantProblem(t, "bad mode", call(t, srv, "POST", "/v1/redact", "admin", `{"text":"x","mode":"shout"}`), 422, "invalid")
	text := "mail jane@example.com now"
	a := call(t, srv, "POST", "/v1/inspect", "admin", `{"text":"`+text+`"}`)
	fs, _ := a.body["findings"].([]any)
	if a.status != 200 || len(fs) != 1 || strings.Contains(strings.ToLower(toJSON(a.body)), "jane@") {
		t.Fatalf("inspect: %d %v", a.status, a.body)
	}
	a = call(t, srv, "POST", "/v1/redact", "admin", `{"text":"`+text+`","mode":"placeholder"}`)
	if a.status != 200 || a.body["findings"] != float64(1) || strings.Contains(a.body["text"].(string), "jane@") {
		t.Fatalf("redact: %d %v", a.status, a.body)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
