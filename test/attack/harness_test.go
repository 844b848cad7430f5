package attack

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/openapitest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testlog"
)

// syncBuffer is a goroutine-safe log sink, so tests can scan server output.
type syncBuffer = testlog.Buffer

// clock is the server's clock: the real time plus an offset a test moves
// forward (never back, so audit times stay ordered).
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// setup says how to start a node.
type setup struct {
	// settings are config keys set (as flags would) before the server opens.
	settings map[string]string
	// shares and threshold, when set, split the root key: the node starts
	// sealed, without an admin token, and init's shares are in n.init.
	shares, threshold int
}

// node is one running server over real HTTPS.
type node struct {
	t       testing.TB
	dir     string
	backend string
	init    app.InitResult
	srv     *app.Server
	url     string
	addr    string
	logs    *syncBuffer
	clock   *clock
	pool    *x509.CertPool
	raw     *http.Client // trusts the CA, no token, from 127.0.0.1
	admin   string       // the bootstrap admin client's access token
	ips     atomic.Int64 // source addresses handed out by freshIP
	// contract checks every answer the node's clients receive against
	// the OpenAPI document; a mismatch fails the test.
	contract *openapitest.Recorder
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
	n := &node{t: t, dir: t.TempDir() + "/data", backend: b.Name, logs: &syncBuffer{}, clock: &clock{},
		contract: openapitest.Watch(t)}
	dbURL := ""
	if b.Name != "sqlite" {
		dbURL = b.DSN(t)
	}
	var err error
	n.init, err = app.Init(context.Background(), app.InitOptions{DataDir: n.dir, DatabaseURL: dbURL, Listen: "127.0.0.1:0",
		Shares: s.shares, Threshold: s.threshold})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	pem, err := os.ReadFile(n.init.CACert)
	if err != nil {
		t.Fatal(err)
	}
	n.pool = x509.NewCertPool()
	n.pool.AppendCertsFromPEM(pem)
	n.raw = n.from("127.0.0.1")
	t.Cleanup(n.stop)
	n.serve(s)
	if s.shares == 0 {
		n.admin = n.token(n.init.ClientID, n.init.ClientSecret)
	}
	return n
}

// serve opens the deployment with the settings and serves it on a new
// loopback port.
func (n *node) serve(s setup) {
	t := n.t
	t.Helper()
	cfg := n.config(s)
	log := slog.New(slog.NewJSONHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	n.srv, err = app.Open(context.Background(), cfg, app.Options{Logger: log, Now: n.clock.Now})
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	n.addr = ln.Addr().String()
	n.url = "https://" + n.addr
	srv := n.srv
	go func() { _ = srv.Serve(ln) }()
}

// config loads the deployment's configuration with the settings, as
// serve does (offline commands such as audit verify read the same).
func (n *node) config(s setup) *config.Config {
	t := n.t
	t.Helper()
	var env []string
	if n.backend != "sqlite" {
		// The test database role is a superuser (the e2e suite covers
		// serving as the least-privileged app role).
		env = append(env, "COFFER_DATABASE_ALLOW_SUPERUSER=true")
	}
	cfg, err := config.Load(n.dir, env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	for _, set := range []map[string]string{baseSettings, s.settings} {
		for k, v := range set {
			if err := cfg.Set(k, v); err != nil {
				t.Fatalf("config %s: %v", k, err)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// reopen stops the server and serves the same deployment with other settings.
func (n *node) reopen(s setup) {
	n.t.Helper()
	n.stop()
	n.serve(s)
}

// from returns an HTTPS client (trusting the CA, no token) whose
// connections come from the loopback address ip: the server locks out
// source addresses after failed logins, so attacks on the token and login
// endpoints each come from an address of their own.
func (n *node) from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: n.contract.Transport(&http.Transport{
		DialContext:     d.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: n.pool, MinVersion: tls.VersionTLS12}})}
}

// freshIP returns a loopback address no earlier request of this node came from.
func (n *node) freshIP() string {
	i := n.ips.Add(1) + 1 // 127.0.0.2 onwards; 127.0.0.1 is the admin's
	return fmt.Sprintf("127.0.%d.%d", i/250, i%250+2)
}

func (n *node) stop() {
	if n.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.srv.Shutdown(ctx)
		n.srv = nil
	}
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
	hr, err := http.NewRequest(r.method, n.url+r.path, body)
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
	hc := n.raw
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

// token gets an access token for a client through the token endpoint.
func (n *node) token(id, secret string) string {
	n.t.Helper()
	r := n.form(n.t, "/v1/oauth/token", "grant_type=client_credentials&client_id="+id+"&client_secret="+secret, nil)
	if r.status != 200 {
		n.t.Fatalf("token: %s", r)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	mustJSON(n.t, r.body, &out)
	return out.AccessToken
}

// newClient creates a client with roles and returns its id and a token.
func (n *node) newClient(t testing.TB, name string, roles ...string) (id, token string) {
	t.Helper()
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	n.must(t, 201, "POST", "/v1/clients", n.admin, map[string]any{"name": name, "roles": roles}, &out)
	return out.ClientID, n.token(out.ClientID, out.ClientSecret)
}

func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}
