package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/openapitest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testlog"
)

// syncBuffer is a goroutine-safe log sink, so tests can scan server output.
type syncBuffer = testlog.Buffer

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
	admin   *client.Client
	raw     *http.Client // trusts the CA, no token
	env     []string     // COFFER_* overrides for the server's config
	opts    app.Options  // process-level options (the logger is set by serve)
	metrics string       // the metrics listener's address, once serveMetrics ran
	// contract checks every answer n.raw and the SDK clients receive
	// against the OpenAPI document; a mismatch fails the test.
	contract *openapitest.Recorder
}

// serveMetrics serves the server's metrics on a loopback port (once) and
// returns the base URL.
func (n *node) serveMetrics() string {
	n.t.Helper()
	if n.metrics == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			n.t.Fatal(err)
		}
		srv := n.srv
		go func() { _ = srv.ServeMetrics(ln) }()
		n.metrics = "http://" + ln.Addr().String()
	}
	return n.metrics
}

// scrapeMetrics returns the server's /metrics text.
func (n *node) scrapeMetrics() string {
	n.t.Helper()
	resp, err := http.Get(n.serveMetrics() + "/metrics")
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		n.t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// forEachBackend runs fn against a fresh deployment on SQLite and on PostgreSQL.
func forEachBackend(t *testing.T, fn func(t *testing.T, n *node)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, start(t, b))
		})
	}
}

// start initialises a deployment in a temporary directory and serves it.
func start(t testing.TB, b storetest.Backend, env ...string) *node {
	t.Helper()
	return startWith(t, b, app.Options{}, env...)
}

// startWith is start with process-level options (benchmark hooks).
func startWith(t testing.TB, b storetest.Backend, opts app.Options, env ...string) *node {
	t.Helper()
	n := &node{t: t, dir: t.TempDir() + "/data", backend: b.Name, logs: &syncBuffer{}, env: env, opts: opts}
	dbURL := ""
	if b.Name != "sqlite" {
		dbURL = b.DSN(t)
		// The test database role is a superuser; TestLeastPrivilege covers
		// serving as the app role that coffer migrate creates.
		n.env = append(n.env, "COFFER_DATABASE_ALLOW_SUPERUSER=true")
	}
	var err error
	n.init, err = app.Init(context.Background(), app.InitOptions{DataDir: n.dir, DatabaseURL: dbURL, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	n.serve("127.0.0.1:0")
	t.Cleanup(n.stop)
	return n
}

func (n *node) serve(addr string) {
	t := n.t
	t.Helper()
	if n.contract == nil {
		n.contract = openapitest.Watch(t)
	}
	cfg, err := config.Load(n.dir, n.env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	opts := n.opts
	opts.Logger = slog.New(slog.NewJSONHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n.srv, err = app.Open(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	n.addr = ln.Addr().String()
	n.url = "https://" + n.addr
	srv := n.srv
	go func() { _ = srv.Serve(ln) }()
	n.admin = n.clientFor(n.init.ClientID, n.init.ClientSecret)
	pem, err := os.ReadFile(n.init.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	n.raw = &http.Client{Timeout: 30 * time.Second, Transport: n.contract.Transport(&http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})}
}

func (n *node) stop() {
	if n.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.srv.Shutdown(ctx)
		n.srv = nil
	}
}

// restart stops the server and serves the same data directory again.
func (n *node) restart() {
	n.t.Helper()
	n.stop()
	n.serve("127.0.0.1:0")
}

func (n *node) clientFor(id, secret string) *client.Client {
	n.t.Helper()
	c, err := client.New(n.url, client.WithCAFile(n.init.CACert), client.WithClientCredentials(id, secret),
		client.WithTransportWrapper(n.contract.Transport))
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

// do sends a raw request (with an optional bearer token) and returns the
// status, headers and body.
func (n *node) do(method, path, token, contentType string, body io.Reader) (int, http.Header, []byte) {
	n.t.Helper()
	req, err := http.NewRequest(method, n.url+path, body)
	if err != nil {
		n.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := n.raw.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// token gets an access token for the admin client through the token endpoint.
func (n *node) token(id, secret string) string {
	n.t.Helper()
	form := "grant_type=client_credentials&client_id=" + id + "&client_secret=" + secret
	st, _, b := n.do("POST", "/v1/oauth/token", "", "application/x-www-form-urlencoded", strings.NewReader(form))
	if st != 200 {
		n.t.Fatalf("token: %d %s", st, b)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	mustJSON(n.t, b, &out)
	return out.AccessToken
}
