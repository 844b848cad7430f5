package testserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/openapitest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testclock"
	"github.com/cofferhq/coffer/internal/testlog"
)

// Options say how to initialise and serve a deployment. The zero value is
// a file-key deployment served with the defaults.
type Options struct {
	// Env holds COFFER_* overrides, read as the process environment would
	// be (KEY=value).
	Env []string
	// Settings are configuration keys set after the environment, as
	// command-line flags would be (key → value); the result is validated.
	Settings map[string]string
	// App holds the process-level options (benchmark and timing hooks).
	// Logger is always replaced by one writing into Server.Logs; Now,
	// when nil, is Server.Clock's.
	App app.Options
	// Init are the options of coffer init; DataDir, Listen and
	// DatabaseURL are filled in. Shares and Threshold split the root key:
	// the server starts sealed, with the shares in Server.Init.
	Init app.InitOptions
	// Policy, when set, is the policy document (YAML) the bootstrap admin
	// applies through PUT /v1/policy once the server serves.
	Policy string
}

// Server is one deployment served over real HTTPS on loopback. Its
// exported fields are the deployment's facts; Serve, Stop and Restart
// change App, URL, Addr, HTTP and Admin.
type Server struct {
	T       testing.TB
	Dir     string // the data directory
	Backend string // "sqlite" or "postgres"
	Init    app.InitResult
	// Env, Settings and App are the options the next Serve uses; a test
	// may change them between a Stop and a Serve.
	Env      []string
	Settings map[string]string
	App      app.Options
	Srv      *app.Server // nil while stopped
	URL      string      // https://Addr
	Addr     string
	Logs     *testlog.Buffer // what the server logged (JSON, debug level)
	Clock    *testclock.Offset
	Contract *openapitest.Recorder // checks every answer HTTP, From and Client see
	CAPool   *x509.CertPool        // the deployment's CA
	HTTP     *http.Client          // trusts the CA, no token
	Admin    *client.Client        // the bootstrap admin client (SDK)
	metrics  string
}

// ForEachBackend runs fn, in parallel subtests named after the backends,
// against a fresh deployment on SQLite and on PostgreSQL.
func ForEachBackend(t *testing.T, o Options, fn func(t *testing.T, s *Server)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, Start(t, b, o))
		})
	}
}

// Start initialises a deployment of backend b in a temporary directory,
// serves it on a loopback port, and stops it at cleanup.
func Start(t testing.TB, b storetest.Backend, o Options) *Server {
	t.Helper()
	s := New(t, b, o)
	s.Serve("127.0.0.1:0")
	if o.Policy != "" {
		s.ApplyPolicy(o.Policy)
	}
	return s
}

// New initialises a deployment of backend b in a temporary directory
// (coffer init, with o.Init) without serving it; it is stopped at cleanup
// once served.
func New(t testing.TB, b storetest.Backend, o Options) *Server {
	t.Helper()
	dir := t.TempDir() + "/data"
	in := o.Init
	in.DataDir, in.Listen = dir, "127.0.0.1:0"
	if b.Name != "sqlite" {
		in.DatabaseURL = b.DSN(t)
	}
	init, err := app.Init(context.Background(), in)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	return At(t, b.Name, dir, init, o)
}

// At returns a Server for a deployment already in dir (one a test
// restored or initialised itself) on backend ("sqlite" or "postgres"),
// not yet serving; init holds its bootstrap credentials and CA file. It is
// stopped at cleanup once served.
func At(t testing.TB, backend, dir string, init app.InitResult, o Options) *Server {
	t.Helper()
	s := &Server{T: t, Dir: dir, Backend: backend, Init: init, Logs: &testlog.Buffer{}, Clock: &testclock.Offset{},
		Env: append([]string(nil), o.Env...), Settings: o.Settings, App: o.App, Contract: openapitest.Watch(t)}
	if backend != "sqlite" {
		// The test database role is a superuser; the e2e suite's
		// TestLeastPrivilege covers serving as the app role.
		s.Env = append(s.Env, "COFFER_DATABASE_ALLOW_SUPERUSER=true")
	}
	pem, err := os.ReadFile(init.CACert)
	if err != nil {
		t.Fatal(err)
	}
	s.CAPool = x509.NewCertPool()
	s.CAPool.AppendCertsFromPEM(pem)
	s.HTTP = s.From("")
	t.Cleanup(s.Stop)
	return s
}

// Config loads the deployment's configuration as Serve does: the
// environment overrides Env and extra, then Settings.
func (s *Server) Config(extra ...string) *config.Config {
	t := s.T
	t.Helper()
	cfg, err := config.Load(s.Dir, append(append([]string(nil), s.Env...), extra...))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if len(s.Settings) > 0 {
		for k, v := range s.Settings {
			if err := cfg.Set(k, v); err != nil {
				t.Fatalf("config %s: %v", k, err)
			}
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("config: %v", err)
		}
	}
	return cfg
}

// Serve opens the deployment (app.Open) and serves it on addr, a loopback
// address ("127.0.0.1:0" for a new port).
func (s *Server) Serve(addr string) {
	t := s.T
	t.Helper()
	opts := s.App
	opts.Logger = slog.New(slog.NewJSONHandler(s.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Now == nil {
		opts.Now = s.Clock.Now
	}
	var err error
	s.Srv, err = app.Open(context.Background(), s.Config(), opts)
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s.Addr = ln.Addr().String()
	s.URL = "https://" + s.Addr
	s.metrics = ""
	srv := s.Srv
	go func() { _ = srv.Serve(ln) }()
	s.Admin = s.Client(s.Init.ClientID, s.Init.ClientSecret)
}

// Stop shuts the server down (a no-op when stopped).
func (s *Server) Stop() {
	if s.Srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Srv.Shutdown(ctx)
		s.Srv = nil
	}
}

// Restart stops the server and serves the same deployment again, with the
// options as they are now, on a new port.
func (s *Server) Restart() {
	s.T.Helper()
	s.Stop()
	s.Serve("127.0.0.1:0")
}

// Peer returns another node of the same deployment (data directory,
// database, bootstrap credentials), not yet serving: a copy of s with its
// own logs, the environment env added, and no server. The caller may
// change its fields (its Dir, App.Now) before Serve; it is stopped at
// cleanup.
func (s *Server) Peer(env ...string) *Server {
	p := &Server{T: s.T, Dir: s.Dir, Backend: s.Backend, Init: s.Init, Env: append(append([]string(nil), s.Env...), env...),
		Settings: s.Settings, App: s.App, Logs: &testlog.Buffer{}, Clock: s.Clock, Contract: s.Contract, CAPool: s.CAPool}
	p.HTTP = p.From("")
	s.T.Cleanup(p.Stop)
	return p
}

// From returns an HTTPS client (trusting the CA, no token, answers checked
// against the contract) whose connections come from the loopback address
// ip, or from the system's choice when ip is empty.
func (s *Server) From(ip string) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if ip != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: s.Contract.Transport(&http.Transport{
		DialContext:     d.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: s.CAPool, MinVersion: tls.VersionTLS12}})}
}

// Client returns an SDK client of the running server that signs in with
// the client credentials id and secret (lazily, on its first call).
func (s *Server) Client(id, secret string) *client.Client {
	s.T.Helper()
	c, err := client.New(s.URL, client.WithCAFile(s.Init.CACert), client.WithClientCredentials(id, secret),
		client.WithTransportWrapper(s.Contract.Transport))
	if err != nil {
		s.T.Fatal(err)
	}
	return c
}

// Token gets an access token for a client through the token endpoint.
func (s *Server) Token(id, secret string) string {
	s.T.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	resp, err := s.HTTP.Post(s.URL+"/v1/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		s.T.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.T.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		s.T.Fatalf("token: decode %q: %v", b, err)
	}
	return out.AccessToken
}

// ApplyPolicy puts the policy document (YAML) in force as the bootstrap
// admin; anything but 204 fails the test.
func (s *Server) ApplyPolicy(doc string) {
	s.T.Helper()
	req, err := http.NewRequest(http.MethodPut, s.URL+"/v1/policy", strings.NewReader(doc))
	if err != nil {
		s.T.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token(s.Init.ClientID, s.Init.ClientSecret))
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		s.T.Fatalf("put policy: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		s.T.Fatalf("put policy: %d %s", resp.StatusCode, b)
	}
}

// ServeMetrics serves the running server's metrics on a loopback port
// (once a Serve) and returns the base URL.
func (s *Server) ServeMetrics() string {
	s.T.Helper()
	if s.metrics == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.T.Fatal(err)
		}
		srv := s.Srv
		go func() { _ = srv.ServeMetrics(ln) }()
		s.metrics = "http://" + ln.Addr().String()
	}
	return s.metrics
}
