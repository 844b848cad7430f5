package e2e

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testlog"
	"github.com/cofferhq/coffer/internal/testserver"
)

// syncBuffer is a goroutine-safe log sink, so tests can scan server output.
type syncBuffer = testlog.Buffer

// node is one running server over real HTTPS (internal/testserver), with
// the suite's helpers.
type node struct {
	*testserver.Server
	t testing.TB
}

// scrapeMetrics returns the server's /metrics text.
func (n *node) scrapeMetrics() string {
	n.t.Helper()
	resp, err := http.Get(n.ServeMetrics() + "/metrics")
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
	testserver.ForEachBackend(t, testserver.Options{}, func(t *testing.T, s *testserver.Server) {
		fn(t, &node{Server: s, t: t})
	})
}

// start initialises a deployment in a temporary directory and serves it.
func start(t testing.TB, b storetest.Backend, env ...string) *node {
	t.Helper()
	return startWith(t, b, app.Options{}, env...)
}

// startWith is start with process-level options (benchmark hooks).
func startWith(t testing.TB, b storetest.Backend, opts app.Options, env ...string) *node {
	t.Helper()
	return &node{Server: testserver.Start(t, b, testserver.Options{Env: env, App: opts}), t: t}
}

// serveAt serves once with the clock now (later serves use the options'
// clock again).
func (n *node) serveAt(addr string, now func() time.Time) {
	n.t.Helper()
	keep := n.App.Now
	n.App.Now = now
	n.Serve(addr)
	n.App.Now = keep
}

// do sends a raw request (with an optional bearer token) and returns the
// status, headers and body.
func (n *node) do(method, path, token, contentType string, body io.Reader) (int, http.Header, []byte) {
	n.t.Helper()
	req, err := http.NewRequest(method, n.URL+path, body)
	if err != nil {
		n.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := n.HTTP.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}
