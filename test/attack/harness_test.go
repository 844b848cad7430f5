package attack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testserver"
)

// setup says how to start a node.
type setup struct {
	// settings are config keys set (as flags would) before the server opens.
	settings map[string]string
	// shares and threshold, when set, split the root key: the node starts
	// sealed, without an admin token, and init's shares are in n.Init.
	shares, threshold int
}

// node is one running server over real HTTPS (internal/testserver), with
// the suite's helpers.
type node struct {
	*testserver.Server
	t     testing.TB
	admin string       // the bootstrap admin client's access token
	ips   atomic.Int64 // source addresses handed out by freshIP
}

// baseSettings keep a node usable for a whole attack run from one address
// (the lockout keys are ignored by the server today, so token and login
// attacks also come from fresh addresses, see freshIP):
// the attacks fail many authentications and read many missing ids on
// purpose, and lockouts or suspensions of 127.0.0.1 would hide the
// answers under test behind 429s and 403s.
var baseSettings = map[string]string{
	"auth.lockout.max_failures":         "100000",
	"auth.lockout.address_max_failures": "100000",
	"detect.failed_auth_burst":          "100000",
	"detect.denied_burst":               "100000",
	"detect.enumeration":                "100000",
	"limits.rate_limit":                 "100000",
	"limits.rate_burst":                 "100000",
	"limits.max_batch_items":            "1000",
}

// all returns baseSettings with s's settings on top.
func (s setup) all() map[string]string {
	out := maps.Clone(baseSettings)
	maps.Copy(out, s.settings)
	return out
}

// forEachBackend runs fn against a fresh deployment on SQLite and on PostgreSQL.
func forEachBackend(t *testing.T, s setup, fn func(t *testing.T, n *node)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, start(t, b, s))
		})
	}
}

// start initialises a deployment in a temporary directory and serves it.
func start(t testing.TB, b storetest.Backend, s setup) *node {
	t.Helper()
	n := &node{Server: testserver.Start(t, b, testserver.Options{Settings: s.all(),
		Init: app.InitOptions{Shares: s.shares, Threshold: s.threshold}}), t: t}
	if s.shares == 0 {
		n.admin = n.Token(n.Init.ClientID, n.Init.ClientSecret)
	}
	return n
}

// config loads the deployment's configuration with the settings, as
// serve does (offline commands such as audit verify read the same).
func (n *node) config(s setup) *config.Config {
	n.t.Helper()
	keep := n.Settings
	n.Settings = s.all()
	defer func() { n.Settings = keep }()
	return n.Config()
}

// serve serves the deployment with the settings on a new loopback port.
func (n *node) serve(s setup) {
	n.t.Helper()
	n.Settings = s.all()
	n.Serve("127.0.0.1:0")
}

// reopen stops the server and serves the same deployment with other settings.
func (n *node) reopen(s setup) {
	n.t.Helper()
	n.Stop()
	n.serve(s)
}

// freshIP returns a loopback address no earlier request of this node came from.
func (n *node) freshIP() string {
	i := n.ips.Add(1) + 1 // 127.0.0.2 onwards; 127.0.0.1 is the admin's
	return fmt.Sprintf("127.0.%d.%d", i/250, i%250+2)
}

// reply is one HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// req is one raw request.
type req struct {
	method, path, token, contentType string
	body                             []byte
	header                           map[string]string
	// via, if set, sends the request (say, from another source address).
	via *http.Client
}

// send sends a raw request and returns the answer.
func (n *node) send(t testing.TB, r req) reply {
	t.Helper()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, n.URL+r.path, body)
	if err != nil {
		t.Fatalf("%s %q: %v", r.method, r.path, err)
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.contentType != "" {
		hr.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		hr.Header[k] = []string{v}
	}
	hc := n.HTTP
	if r.via != nil {
		hc = r.via
	}
	start := time.Now()
	resp, err := hc.Do(hr)
	if err != nil {
		t.Fatalf("%s %q: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %q: read body: %v", r.method, r.path, err)
	}
	return reply{resp.StatusCode, resp.Header, b, time.Since(start)}
}

// call sends a JSON body (a []byte or string as is, anything else encoded)
// with the token.
func (n *node) call(t testing.TB, method, path, token string, body any) reply {
	t.Helper()
	r := req{method: method, path: path, token: token}
	switch b := body.(type) {
	case nil:
	case []byte:
		r.body, r.contentType = b, "application/json"
	case string:
		r.body, r.contentType = []byte(b), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r.body, r.contentType = j, "application/json"
	}
	return n.send(t, r)
}

// must sends a call that has to answer want, and decodes the body into out.
func (n *node) must(t testing.TB, want int, method, path, token string, body, out any) {
	t.Helper()
	r := n.call(t, method, path, token, body)
	if r.status != want {
		t.Fatalf("%s %s: got %s, want %d", method, path, r, want)
	}
	if out != nil {
		mustJSON(t, r.body, out)
	}
}

// form posts an application/x-www-form-urlencoded body.
func (n *node) form(t testing.TB, path, body string, header map[string]string) reply {
	t.Helper()
	return n.send(t, req{method: "POST", path: path, contentType: "application/x-www-form-urlencoded",
		body: []byte(body), header: header})
}

// newClient creates a client with roles and returns its id and a token.
func (n *node) newClient(t testing.TB, name string, roles ...string) (id, token string) {
	t.Helper()
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	n.must(t, 201, "POST", "/v1/clients", n.admin, map[string]any{"name": name, "roles": roles}, &out)
	return out.ClientID, n.Token(out.ClientID, out.ClientSecret)
}

func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}
