package attack

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// publicAttacks: the unauthenticated routes answer the same whatever
// Host, query or method an attacker sends, and never reflect them.
func publicAttacks() []attack {
	var out []attack
	for _, route := range []string{"GET /healthz", "GET /readyz", "GET /v1/openapi.json", "GET /.well-known/oauth-authorization-server", "GET /.well-known/jwks.json"} {
		path := strings.TrimPrefix(route, "GET ")
		out = append(out, attack{route, "Host, query and method games change nothing", func(t *testing.T, w *world) {
			n := w.n
			plain := n.call(t, "GET", path, "", nil)
			if plain.status != 200 {
				t.Fatalf("GET %s: %s", path, plain)
			}
			for _, h := range []map[string]string{
				{"Host": "attacker.example"},
				{"Host": "attacker.example:443", "X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "http", "Forwarded": "host=attacker.example"},
				{"X-Original-URL": "/v1/clients", "X-Rewrite-URL": "/v1/clients"},
				{"Authorization": "Bearer " + marker},
			} {
				r := n.send(t, req{method: "GET", path: path + "?" + q(sqlPayloads[0]) + "=" + q(marker) + "&callback=" + marker, header: h})
				if r.status != 200 || !bytes.Equal(stable(r.body), stable(plain.body)) {
					t.Errorf("with %v: %s\nwant %s", h, r, plain)
				}
				if bytes.Contains(r.body, []byte("attacker.example")) || bytes.Contains(r.body, []byte(marker)) {
					t.Errorf("with %v the answer reflects the request: %s", h, r.body)
				}
			}
			r := n.call(t, "POST", path, "", `{}`)
			wantProblem(t, r, 405, "method not allowed on this path")
			if r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		}})
	}
	return out
}

// stable drops the parts of a body that change between calls (readyz
// has none; this is for safety if checks gain timings).
func stable(b []byte) []byte { return bytes.TrimSpace(b) }

// tlsConn dials the server with cfg (trusting its CA unless cfg says otherwise).
func (n *node) tlsConn(t *testing.T, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.RootCAs == nil {
		cfg.RootCAs = n.CAPool
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "127.0.0.1"
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", n.Addr, cfg)
}

// rawHTTP sends raw bytes over TLS and reads the whole answer.
func (n *node) rawHTTP(t *testing.T, raw string) (*http.Response, []byte, string) {
	t.Helper()
	c, err := n.tlsConn(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(c)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	if err != nil {
		t.Fatalf("answer to %q: %v (%q)", raw, err, all)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, body, string(all)
}

// TestHeaderInjection sends CR and LF in the path, query and header
// values, garbage Authorization headers and Host games over raw TLS: no
// answer is split, none is a 500, and no forged header comes back.
func TestHeaderInjection(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		w := plantWorld(t, n)
		before := w.snapshot(t)
		auth := "Authorization: Bearer " + n.admin + "\r\n"
		for name, c := range map[string]struct {
			raw    string
			status int
		}{
			"encoded CRLF in the path":           {"GET /v1/collections/customers%0d%0aSet-Cookie:%20" + marker + "=1 HTTP/1.1\r\nHost: x\r\n" + auth + "Connection: close\r\n\r\n", 404},
			"encoded CRLF in the record id":      {"GET /v1/collections/customers/records/x%0d%0aSet-Cookie:%20" + marker + "=1 HTTP/1.1\r\nHost: x\r\n" + auth + "Connection: close\r\n\r\n", 404},
			"encoded CRLF in the query":          {"GET /v1/audit/events?principal=x%0d%0aSet-Cookie:%20" + marker + "=1 HTTP/1.1\r\nHost: x\r\n" + auth + "Connection: close\r\n\r\n", 200},
			"raw CR in the request line":         {"GET /healthz\rSet-Cookie: " + marker + "=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400},
			"raw LF in a header value":           {"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\nSet-Cookie: " + marker + "=1\r\nConnection: close\r\n\r\n", 200}, // a bare LF ends the line (RFC 9112 §2.2): a request header, not a response one
			"raw CR in a header value":           {"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rSet-Cookie: " + marker + "=1\r\nConnection: close\r\n\r\n", 400},
			"CR in the Authorization header":     {"GET /v1/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\rSet-Cookie: " + marker + "\r\nConnection: close\r\n\r\n", 400},
			"obsolete line folding":              {"GET /v1/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n " + n.admin + "\r\nConnection: close\r\n\r\n", 200}, // unfolded to one space (RFC 9112 §5.2)
			"two Authorization headers":          {"GET /v1/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + marker + "\r\n" + auth + "Connection: close\r\n\r\n", 401},
			"control bytes in Authorization":     {"GET /v1/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x01\x02\x7f" + marker + "\r\nConnection: close\r\n\r\n", 400},
			"non-ASCII Authorization":            {"GET /v1/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xc3\xa9\xff" + marker + "\r\nConnection: close\r\n\r\n", 401},
			"huge Authorization header":          {"GET /v1/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat("a", 40000) + "\r\nConnection: close\r\n\r\n", 431},
			"oversized token under the limit":    {"GET /v1/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat("a.", 8000) + "\r\nConnection: close\r\n\r\n", 401},
			"no Host":                            {"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400},
			"two Hosts":                          {"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400},
			"Host with a path":                   {"GET /healthz HTTP/1.1\r\nHost: attacker.example/x\r\nConnection: close\r\n\r\n", 400},
			"absolute URI to another host":       {"GET https://attacker.example/healthz HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n", 200},
			"path traversal to an admin route":   {"GET /healthz/../v1/clients HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 307}, // to the clean path, without data
			"encoded traversal":                  {"GET /v1/keys/..%2f..%2fv1%2fclients HTTP/1.1\r\nHost: x\r\n" + auth + "Connection: close\r\n\r\n", 422},
			"HTTP/1.0 without Host":              {"GET /healthz HTTP/1.0\r\n\r\n", 200},
			"unknown method":                     {"FOO /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405},
			"TRACE":                              {"TRACE /v1/clients HTTP/1.1\r\nHost: x\r\n" + auth + "Connection: close\r\n\r\n", 405},
			"request smuggling: CL and TE":       {"POST /v1/oauth/revoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /v1/clients HTTP/1.1\r\nHost: x\r\n\r\n", 400},
			"request smuggling: two lengths":     {"POST /v1/oauth/revoke HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\nConnection: close\r\n\r\ntoke", 400},
			"request smuggling: bad chunk":       {"POST /v1/oauth/revoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400},
			"Transfer-Encoding with a space":     {"POST /v1/oauth/revoke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", 400},
			"client-chosen X-Request-Id":         {"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + marker + "\r\nConnection: close\r\n\r\n", 200},
			"CRLF in a cookie":                   {"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: a=b%0d%0aSet-Cookie:%20" + marker + "\r\nConnection: close\r\n\r\n", 200},
			"header name with a colon injection": {"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A:\r\nSet-Cookie: " + marker + "\r\nConnection: close\r\n\r\n", 200},
		} {
			t.Run(name, func(t *testing.T) {
				resp, body, all := n.rawHTTP(t, c.raw)
				if resp.StatusCode != c.status {
					t.Errorf("status %d, want %d: %q", resp.StatusCode, c.status, all)
				}
				if resp.StatusCode >= 500 {
					t.Errorf("a 500 for bad input: %q", all)
				}
				for k, v := range resp.Header {
					if strings.Contains(k+strings.Join(v, ""), marker) || strings.EqualFold(k, "Set-Cookie") {
						t.Errorf("the answer carries an injected header %s: %v", k, v)
					}
				}
				if n := strings.Count(all, "HTTP/1."); n != 1 {
					t.Errorf("%d answers in one: the response was split: %q", n, all)
				}
				if bytes.Contains(body, []byte(marker)) {
					t.Errorf("the answer echoes the injected value: %s", body)
				}
				if resp.StatusCode == 401 {
					if c := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer ") {
						t.Errorf("401 without a Bearer challenge: %q", c)
					}
				}
			})
		}
		t.Run("metadata ignores Host", func(t *testing.T) {
			resp, body, _ := n.rawHTTP(t, "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: attacker.example\r\nX-Forwarded-Host: attacker.example\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != 200 || bytes.Contains(body, []byte("attacker.example")) {
				t.Errorf("metadata for Host attacker.example: %d %s", resp.StatusCode, body)
			}
		})
		w.unchanged(t, before)
		noEchoInLog(t, n)
	})
}

// TestSlowloris: a client that sends its headers a byte at a time is cut
// off by the read-header timeout, and the server keeps serving others.
func TestSlowloris(t *testing.T) {
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, setup{settings: map[string]string{"timeouts.read_header": "1s"}})
	c, err := n.tlsConn(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	closed := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		closed <- b
	}()
	head := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 100) + "\r\n\r\n"
	var cut time.Duration
	var answer []byte
send:
	for i := 0; i < len(head); i++ {
		select {
		case answer = <-closed:
			cut = time.Since(begin)
			break send
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := c.Write([]byte{head[i]}); err != nil {
			cut = time.Since(begin)
			break
		}
	}
	if cut == 0 {
		select {
		case answer = <-closed:
			cut = time.Since(begin)
		case <-time.After(5 * time.Second):
			t.Fatalf("the server still holds a connection that sent its headers over %v", time.Since(begin))
		}
	}
	if cut < 900*time.Millisecond || cut > 3*time.Second {
		t.Errorf("cut off after %v, want about the 1s read-header timeout", cut)
	}
	if bytes.Contains(answer, []byte(" 200 ")) {
		t.Errorf("the slow request was answered: %q", answer)
	}
	// Others are still served.
	if r := n.call(t, "GET", "/healthz", "", nil); r.status != 200 {
		t.Errorf("healthz after the slow client: %s", r)
	}
}

// TestTLSDowngrade: TLS 1.1 and TLS 1.2 with CBC suites only are refused;
// plain HTTP on the HTTPS port gets a 400 and no data.
func TestTLSDowngrade(t *testing.T) {
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, setup{})
	w := plantWorld(t, n)
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.0": {MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10},
		"TLS 1.1": {MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11},
		"TLS 1.2 with CBC suites only": {MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
			tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA256}},
		"TLS 1.2 with RC4 and 3DES only": {MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA, tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA}},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := n.tlsConn(t, cfg)
			if err == nil {
				st := c.ConnectionState()
				c.Close()
				t.Fatalf("handshake accepted: version %x, suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
		})
	}
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.3":            {MinVersion: tls.VersionTLS13},
		"TLS 1.2 with GCM":   {MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		"TLS 1.2 (defaults)": {MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12},
	} {
		t.Run(name+" is accepted", func(t *testing.T) {
			c, err := n.tlsConn(t, cfg)
			if err != nil {
				t.Fatalf("handshake refused: %v (the refusals above could be anything)", err)
			}
			c.Close()
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", n.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /v1/collections/customers/records/"+w.recA+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+n.admin+"\r\nConnection: close\r\n\r\n")
		all, _ := io.ReadAll(c)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
		if err != nil {
			t.Fatalf("answer %q: %v", all, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "Client sent an HTTP request to an HTTPS server") {
			t.Errorf("plain HTTP got %d %q", resp.StatusCode, body)
		}
		for _, leak := range []string{"{", "Ada", "customers", w.recA, "admin"} {
			if strings.Contains(string(all), leak) {
				t.Errorf("plain HTTP answer leaks %q: %q", leak, all)
			}
		}
	})
}
