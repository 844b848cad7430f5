package pki

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is a CA on disk with a server pair and a running HTTPS server
// using ServerTLSConfig over loopback.
type fixture struct {
	ca                     *CA
	dir, caFile, cert, key string
	url, addr              string
	serverCfg              *tls.Config
	reloadErrsMu           sync.Mutex
	reloadErrs             []error
}

func newFixture(t *testing.T, clientCerts bool) *fixture {
	t.Helper()
	now := time.Now()
	ca, err := CreateCA(rand.Reader, now.Add(-72*time.Hour), "Coffer test CA")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, dir: t.TempDir()}
	if err := ca.Save(f.dir); err != nil {
		t.Fatal(err)
	}
	f.caFile = filepath.Join(f.dir, CACertFile)
	f.cert, f.key = filepath.Join(f.dir, "server.pem"), filepath.Join(f.dir, "server-key.pem")
	f.issueServer(t, "localhost")

	opts := TLSOptions{OnReloadError: func(err error) {
		f.reloadErrsMu.Lock()
		f.reloadErrs = append(f.reloadErrs, err)
		f.reloadErrsMu.Unlock()
	}}
	if clientCerts {
		opts.ClientCAs, opts.VerifyClientCerts = ca.Pool(), true
	}
	cfg, err := ServerTLSConfig(f.cert, f.key, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.serverCfg = cfg
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := "-"
			if len(r.TLS.VerifiedChains) > 0 {
				if n, ok := ClientName(r.TLS.VerifiedChains[0][0]); ok {
					name = n
				}
			}
			fmt.Fprintf(w, "%s %x %s", name, r.TLS.Version, r.Proto)
		}),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	f.addr = ln.Addr().String()
	f.url = "https://" + f.addr + "/"
	return f
}

func (f *fixture) issueServer(t *testing.T, hosts ...string) *tlsLeaf {
	t.Helper()
	certPEM, keyPEM, err := f.ca.IssueServer(rand.Reader, time.Now(), append([]string{"127.0.0.1"}, hosts...), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyPair(f.cert, f.key, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCertPEM(certPEM)
	return &tlsLeaf{serial: c.SerialNumber.String()}
}

type tlsLeaf struct{ serial string }

// client returns an HTTP client trusting the fixture's CA, with cfg
// adjusting its TLS settings.
func (f *fixture) client(t *testing.T, adjust func(*tls.Config)) *http.Client {
	t.Helper()
	cfg, err := ClientTLSConfig(f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(cfg)
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(c *http.Client, url string) (string, *http.Response, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp, err
}

func TestHandshakeAccepted(t *testing.T) {
	f := newFixture(t, false)
	tests := []struct {
		name    string
		adjust  func(*tls.Config)
		version uint16
	}{
		{"ok/TLS 1.3 default client", nil, tls.VersionTLS13},
		{"ok/TLS 1.3 X25519MLKEM768 only", func(c *tls.Config) {
			c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768}
		}, tls.VersionTLS13},
		{"ok/TLS 1.2 AES-128-GCM", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}, tls.VersionTLS12},
		{"ok/TLS 1.2 AES-256-GCM", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
		}, tls.VersionTLS12},
		{"ok/TLS 1.2 ChaCha20-Poly1305", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
		}, tls.VersionTLS12},
		{"ok/TLS 1.2 P-256 only", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CurvePreferences = []tls.CurveID{tls.CurveP256}
		}, tls.VersionTLS12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, resp, err := get(f.client(t, tt.adjust), f.url)
			if err != nil {
				t.Fatal(err)
			}
			if resp.TLS.Version != tt.version {
				t.Errorf("version = %x, want %x", resp.TLS.Version, tt.version)
			}
			if strings.Contains(tt.name, "MLKEM") && resp.TLS.CurveID != tls.X25519MLKEM768 {
				t.Errorf("key exchange = %v, want X25519MLKEM768", resp.TLS.CurveID)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("proto = %s, want HTTP/2 via ALPN", resp.Proto)
			}
			if want := fmt.Sprintf("- %x", tt.version); !strings.HasPrefix(body, want) {
				t.Errorf("body = %q, want prefix %q", body, want)
			}
		})
	}
}

// weakClients are client configurations the server must refuse. Each is
// first shown to work against a permissive server, so the refusal is the
// server's doing and not the client's.
var weakClients = []struct {
	name   string
	adjust func(*tls.Config)
}{
	{"fail/TLS 1.1", func(c *tls.Config) {
		c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
		c.CipherSuites = nil
	}},
	{"fail/TLS 1.0", func(c *tls.Config) {
		c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
		c.CipherSuites = nil
	}},
	{"fail/TLS 1.2 CBC suites only", func(c *tls.Config) {
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		}
	}},
}

func TestHandshakeRefused(t *testing.T) {
	f := newFixture(t, false)
	pair, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		t.Fatal(err)
	}
	permissive := &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS10,
		CipherSuites: append(CipherSuites(),
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256),
	}
	for _, tt := range weakClients {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ClientTLSConfig(f.caFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.ServerName = "localhost"
			tt.adjust(cfg)

			// Control: a permissive server accepts this very client.
			if err := handshakeWith(t, permissive, cfg); err != nil {
				t.Fatalf("control handshake against a permissive server: %v", err)
			}

			conn, err := tls.Dial("tcp", f.addr, cfg)
			if err == nil {
				st := conn.ConnectionState()
				conn.Close()
				t.Fatalf("handshake succeeded: version %x suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
		})
	}
}

// handshakeWith runs one handshake between server config s and client
// config c over loopback.
func handshakeWith(t *testing.T, s, c *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		conn.(*tls.Conn).Handshake()
		conn.Close()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), c)
	if err != nil {
		return err
	}
	return conn.Close()
}

func TestServerTLSConfigSettings(t *testing.T) {
	f := newFixture(t, true)
	cfg := f.serverCfg
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", cfg.MinVersion)
	}
	if !slices.Equal(cfg.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos = %v", cfg.NextProtos)
	}
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("ClientAuth = %v", cfg.ClientAuth)
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not ECDHE+AEAD", name)
		}
	}
	if len(cfg.CipherSuites) != 6 {
		t.Errorf("%d suites, want 6", len(cfg.CipherSuites))
	}
	if !slices.Contains(cfg.CurvePreferences, tls.X25519MLKEM768) || !slices.Contains(cfg.CurvePreferences, tls.X25519) || !slices.Contains(cfg.CurvePreferences, tls.CurveP256) {
		t.Errorf("CurvePreferences = %v", cfg.CurvePreferences)
	}
}

func TestServerTLSConfigErrors(t *testing.T) {
	f := newFixture(t, false)
	tests := []struct {
		name      string
		cert, key string
		opts      TLSOptions
		setup     func()
		want      error
	}{
		{"fail/missing cert", filepath.Join(f.dir, "nope.pem"), f.key, TLSOptions{}, nil, os.ErrNotExist},
		{"fail/verify without CAs", f.cert, f.key, TLSOptions{VerifyClientCerts: true}, nil, nil},
		{"fail/key of another pair", f.cert, filepath.Join(f.dir, CAKeyFile), TLSOptions{}, nil, ErrKeyMismatch},
		{"fail/key readable by group", f.cert, f.key, TLSOptions{}, func() { os.Chmod(f.key, 0o640) }, ErrKeyPermissions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			_, err := ServerTLSConfig(tt.cert, tt.key, tt.opts)
			if err == nil {
				t.Fatal("succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestClientTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a cert"), 0o644)
	for _, file := range []string{bad, filepath.Join(dir, "missing.pem")} {
		if _, err := ClientTLSConfig(file); err == nil {
			t.Errorf("ClientTLSConfig(%s) succeeded", filepath.Base(file))
		}
	}
}

func TestClientCertificates(t *testing.T) {
	f := newFixture(t, true)
	other, err := CreateCA(rand.Reader, time.Now(), "Other CA")
	if err != nil {
		t.Fatal(err)
	}
	withCert := func(ca *CA, name string, now time.Time, ttl time.Duration) func(*tls.Config) {
		certPEM, keyPEM, err := ca.IssueClient(rand.Reader, now, name, ttl)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		// GetClientCertificate sends the certificate even when its issuer is
		// not among the server's acceptable CAs, so the server must judge it.
		return func(c *tls.Config) {
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
	}
	serverPEM, serverKey, err := f.ca.IssueServer(rand.Reader, time.Now(), []string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	serverPair, _ := tls.X509KeyPair(serverPEM, serverKey)

	tests := []struct {
		name     string
		adjust   func(*tls.Config)
		wantBody string // prefix; empty means the handshake must fail
	}{
		{"ok/no certificate uses bearer tokens", nil, "- "},
		{"ok/certificate from Coffer CA yields its name", withCert(f.ca, "billing-service", time.Now(), 0), "billing-service "},
		{"fail/certificate from another CA", withCert(other, "billing-service", time.Now(), 0), ""},
		{"fail/expired certificate", withCert(f.ca, "old", time.Now().Add(-48*time.Hour), time.Hour), ""},
		{"fail/server certificate used as client", func(c *tls.Config) {
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &serverPair, nil }
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _, err := get(f.client(t, tt.adjust), f.url)
			if tt.wantBody == "" {
				if err == nil {
					t.Fatalf("request succeeded: %q", body)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(body, tt.wantBody) {
				t.Errorf("body = %q, want prefix %q", body, tt.wantBody)
			}
		})
	}
}

func TestHotReload(t *testing.T) {
	f := newFixture(t, false)
	serialOf := func() string {
		t.Helper()
		_, resp, err := get(f.client(t, nil), f.url)
		if err != nil {
			t.Fatal(err)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	first := serialOf()
	if again := serialOf(); again != first {
		t.Fatalf("certificate changed without renewal: %s then %s", first, again)
	}

	renewed := f.issueServer(t, "localhost", "renewed.example")
	if got := serialOf(); got != renewed.serial {
		t.Fatalf("after renewal served serial %s, want %s (old %s)", got, renewed.serial, first)
	}

	// A broken pair on disk (key of another certificate) keeps the last
	// good one in use and is reported once.
	certPEM, _, err := f.ca.IssueServer(rand.Reader, time.Now(), []string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := serialOf(); got != renewed.serial {
			t.Fatalf("with a broken pair served serial %s, want the last good %s", got, renewed.serial)
		}
	}
	f.reloadErrsMu.Lock()
	n := len(f.reloadErrs)
	f.reloadErrsMu.Unlock()
	if n != 1 {
		t.Errorf("reload errors reported = %d, want 1", n)
	}

	// Fixing the pair is picked up again.
	fixed := f.issueServer(t, "localhost")
	if got := serialOf(); got != fixed.serial {
		t.Fatalf("after fix served serial %s, want %s", got, fixed.serial)
	}
}

func BenchmarkHandshakeTLS13(b *testing.B) {
	ca := newCA(b)
	dir := b.TempDir()
	certPEM, keyPEM, err := ca.IssueServer(rand.Reader, time.Now(), []string{"localhost"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	cf, kf := filepath.Join(dir, "s.pem"), filepath.Join(dir, "k.pem")
	if err := WriteKeyPair(cf, kf, certPEM, keyPEM); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM(), 0o644)
	scfg, err := ServerTLSConfig(cf, kf, TLSOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ccfg, err := ClientTLSConfig(filepath.Join(dir, "ca.pem"))
	if err != nil {
		b.Fatal(err)
	}
	ccfg.ServerName = "localhost"
	ccfg.ClientSessionCache = nil
	for b.Loop() {
		c1, c2 := net.Pipe()
		srv := tls.Server(c1, scfg)
		errc := make(chan error, 1)
		go func() { errc <- srv.Handshake() }()
		cl := tls.Client(c2, ccfg)
		if err := cl.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		c1.Close()
		c2.Close()
	}
}
