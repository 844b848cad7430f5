package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

const relayPolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  relay:
    - resources: ["tokens/card_number", "tokens/email"]
      actions: [tokenize, tokenize_linkable, detokenize]
`

// upstream is a real HTTP server behind the relay that records what
// reached it.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits []seen
	// answer writes the response (default: echo the body as {"received":…}).
	answer func(w http.ResponseWriter, r *http.Request, body []byte)
}

type seen struct {
	method, path, query, host, contentType string
	header                                 http.Header
	body                                   []byte
}

func (u *upstream) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.hits = append(u.hits, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("Content-Type"), r.Header.Clone(), body})
	answer := u.answer
	u.mu.Unlock()
	if answer != nil {
		answer(w, r, body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if len(body) == 0 {
		body = []byte("null")
	}
	if !json.Valid(body) {
		body, _ = json.Marshal(string(body))
	}
	fmt.Fprintf(w, `{"received":%s}`, body)
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.hits)
}

func (u *upstream) last(t testing.TB) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.hits) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return u.hits[len(u.hits)-1]
}

func (u *upstream) setAnswer(f func(w http.ResponseWriter, r *http.Request, body []byte)) {
	u.mu.Lock()
	u.answer = f
	u.mu.Unlock()
}

// relayEnv is a node serving a relay in front of an application (plain
// HTTP on loopback) and a third party (HTTPS with its own CA).
type relayEnv struct {
	n        *node
	url      string
	app      *upstream
	third    *upstream
	clientID string
	release  chan struct{} // closed at cleanup: frees the stalled upstream
}

// relayRoutes are the routes every relay test uses; APP, THIRD and DEAD
// stand for the upstreams' URLs.
const relayRoutes = `
    - name: signup
      match: {method: POST, path: /signup}
      upstream: APP
      request:  {tokenize: [{field: card.number, type: card_number, mode: format_preserving},
                            {field: email, type: email, mode: deterministic}]}
      response: {detokenize: [{field: received.card.number}]}
    - name: batch
      match: {method: POST, path: /batch/*}
      upstream: APP
      request:  {tokenize: [{field: "items[*].card", type: card_number}]}
    - name: pay
      match: {method: POST, path: /pay}
      upstream: THIRD
      request:  {detokenize: [{field: card}]}
      response: {mask: [{field: received.card, masker: card}]}
    - name: stream
      match: {method: "*", path: /files/*}
      upstream: APP
    - name: dead
      match: {method: GET, path: /dead}
      upstream: DEAD
    - name: slow
      match: {method: GET, path: /slow}
      upstream: SLOW
    - name: ssn
      match: {method: POST, path: /ssn}
      upstream: APP
      request: {tokenize: [{field: ssn, type: ssn}]}
`

func startRelay(t testing.TB, n *node) *relayEnv {
	t.Helper()
	ctx := context.Background()
	if err := n.Admin.PutPolicy(ctx, []byte(relayPolicy), "yaml"); err != nil {
		t.Fatal(err)
	}
	id, _ := n.newServiceClient("relay", "relay")
	e := &relayEnv{n: n, clientID: id, app: &upstream{}, third: &upstream{}, release: make(chan struct{})}
	e.app.srv = httptest.NewServer(http.HandlerFunc(e.app.handle))
	e.third.srv = httptest.NewTLSServer(http.HandlerFunc(e.third.handle))
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // answers only once the test is over
		case <-e.release:
		case <-r.Context().Done():
		}
	}))
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	_ = dead.Close() // nothing listens there now
	t.Cleanup(func() {
		close(e.release)
		slow.Close()
		e.app.srv.Close()
		e.third.srv.Close()
	})
	ca := filepath.Join(t.TempDir(), "third-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.third.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	routes := strings.NewReplacer("APP", e.app.srv.URL, "THIRD", e.third.srv.URL, "DEAD", deadURL, "SLOW", slow.URL).Replace(relayRoutes)
	cfg := fmt.Sprintf("\nrelay:\n  listen: 127.0.0.1:0\n  client: %s\n  upstream_ca_file: %s\n  upstream_timeout: 2s\n  routes:%s", id, ca, routes)
	f, err := os.OpenFile(filepath.Join(n.Dir, "coffer.yaml"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(cfg); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	n.Env = append(n.Env, "COFFER_LIMITS_MAX_BODY_BYTES=65536")
	n.Restart()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := n.Srv
	go func() { _ = srv.ServeRelay(ln) }()
	e.url = "https://" + ln.Addr().String()
	return e
}

// send calls the relay over HTTPS.
func (e *relayEnv) send(method, path, contentType string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	e.n.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.n.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.n.HTTP.Do(req)
	if err != nil {
		e.n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func digitsOf(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// TestRelay: inbound, the application receives tokens and its answer
// comes back detokenized; outbound, the third party receives the values
// and its echo comes back masked; forms, arrays, streaming, upstream
// failures and every bad input; the audit log names the fields and
// counts, never a value or a token.
func TestRelay(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		e := startRelay(t, n)
		const card = "4111111111111111"
		const email = "ada@example.com"
		var cardToken string

		t.Run("inbound json", func(t *testing.T) {
			body := `{"name":"Ada","card":{"number":"` + card + `","exp":"12/30"},"email":"` + email + `","n":12.50}`
			st, h, b := e.send("POST", "/signup?x=1", "application/json", strings.NewReader(body), "X-Custom", "kept", "Host", "evil.example",
				"Connection", "X-Hop", "X-Hop", "dropped", "Proxy-Authorization", "Basic eDp5")
			if st != 200 {
				t.Fatalf("relay: %d %s", st, b)
			}
			got := e.app.last(t)
			if bytes.Contains(got.body, []byte(card)) || bytes.Contains(got.body, []byte(email)) {
				t.Fatalf("the application saw a value: %s", got.body)
			}
			var in struct {
				Name  string
				Card  struct{ Number, Exp string }
				Email string
				N     json.Number
			}
			mustJSON(t, got.body, &in)
			cardToken = in.Card.Number
			if len(cardToken) != len(card) || !strings.HasSuffix(cardToken, "1111") || in.Name != "Ada" || in.Card.Exp != "12/30" || in.N.String() != "12.50" {
				t.Fatalf("upstream body %s", got.body)
			}
			if !strings.HasPrefix(in.Email, "dtk_") || got.header.Get("X-Custom") != "kept" || got.query != "x=1" || got.path != "/signup" {
				t.Fatalf("upstream saw %+v", got)
			}
			if got.header.Get("X-Hop") != "" || got.header.Get("Proxy-Authorization") != "" {
				t.Fatalf("hop-by-hop headers reached the upstream: %v", got.header)
			}
			if got.host != strings.TrimPrefix(e.app.srv.URL, "http://") {
				t.Fatalf("upstream Host %q: the caller's Host header must not pass", got.host)
			}
			// The answer echoes the token, detokenized on its way back.
			var out struct {
				Received struct {
					Card  struct{ Number string }
					Email string
				}
			}
			mustJSON(t, b, &out)
			if digitsOf(out.Received.Card.Number) != card || out.Received.Email != in.Email {
				t.Fatalf("answer %s", b)
			}
			if h.Get("X-Coffer-Request-Id") == "" {
				t.Fatal("no X-Coffer-Request-Id")
			}
			// The same email tokenizes to the same deterministic token.
			e.send("POST", "/signup", "application/json", strings.NewReader(`{"email":"`+email+`"}`))
			var again struct{ Email string }
			mustJSON(t, e.app.last(t).body, &again)
			if again.Email != in.Email {
				t.Fatalf("deterministic token changed: %q, %q", again.Email, in.Email)
			}
		})

		t.Run("inbound form", func(t *testing.T) {
			form := url.Values{"card[number]": {card}, "email": {email}, "plan": {"gold"}}.Encode()
			st, _, b := e.send("POST", "/signup", "application/x-www-form-urlencoded", strings.NewReader(form))
			if st != 200 {
				t.Fatalf("relay: %d %s", st, b)
			}
			got := e.app.last(t)
			vals, err := url.ParseQuery(string(got.body))
			if err != nil {
				t.Fatal(err)
			}
			if vals.Get("card[number]") == card || !strings.HasSuffix(vals.Get("card[number]"), "1111") ||
				!strings.HasPrefix(vals.Get("email"), "dtk_") || vals.Get("plan") != "gold" {
				t.Fatalf("upstream form %q", got.body)
			}
		})

		t.Run("arrays", func(t *testing.T) {
			body := `{"items":[{"card":"4111111111111111"},{"card":"5555555555554444"},{"other":1}]}`
			st, _, b := e.send("POST", "/batch/orders", "application/json", strings.NewReader(body))
			if st != 200 {
				t.Fatalf("relay: %d %s", st, b)
			}
			var in struct{ Items []struct{ Card string } }
			mustJSON(t, e.app.last(t).body, &in)
			if len(in.Items) != 3 || !strings.HasPrefix(in.Items[0].Card, "tok_") || !strings.HasPrefix(in.Items[1].Card, "tok_") || in.Items[2].Card != "" {
				t.Fatalf("upstream body %s", e.app.last(t).body)
			}
		})

		t.Run("outbound", func(t *testing.T) {
			e.third.setAnswer(func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Type", "application/json")
				var in struct{ Card string }
				_ = json.Unmarshal(body, &in)
				fmt.Fprintf(w, `{"received":{"card":%q},"status":"paid"}`, in.Card)
			})
			st, _, b := e.send("POST", "/pay", "application/json", strings.NewReader(`{"card":"`+cardToken+`","amount":100}`))
			if st != 200 {
				t.Fatalf("relay: %d %s", st, b)
			}
			var in struct {
				Card   string
				Amount int
			}
			mustJSON(t, e.third.last(t).body, &in)
			if digitsOf(in.Card) != card || in.Amount != 100 {
				t.Fatalf("the third party got %s", e.third.last(t).body)
			}
			var out struct {
				Received struct{ Card string }
				Status   string
			}
			mustJSON(t, b, &out)
			if out.Received.Card != "************1111" || out.Status != "paid" {
				t.Fatalf("answer %s: the echoed card must come back masked", b)
			}
		})

		t.Run("streaming and chunked", func(t *testing.T) {
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB answer, past the body limit: streamed
			e.app.setAnswer(func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Type", "application/octet-stream")
				for i := 0; i < 16; i++ {
					_, _ = w.Write(big[i*len(big)/16 : (i+1)*len(big)/16])
					w.(http.Flusher).Flush()
				}
			})
			defer e.app.setAnswer(nil)
			pr, pw := io.Pipe()
			go func() {
				for i := 0; i < 8; i++ {
					_, _ = pw.Write(bytes.Repeat([]byte{'x'}, 4096))
				}
				_ = pw.Close()
			}()
			st, _, b := e.send("PUT", "/files/a.bin", "application/octet-stream", pr)
			if st != 200 || !bytes.Equal(b, big) {
				t.Fatalf("relay: %d, %d bytes", st, len(b))
			}
			if got := e.app.last(t); len(got.body) != 8*4096 || got.path != "/files/a.bin" {
				t.Fatalf("upstream got %d bytes at %s", len(got.body), got.path)
			}
		})

		t.Run("bad input", func(t *testing.T) {
			before := e.app.count()
			for _, tc := range []struct {
				name, method, path, ctype, body string
				want                            int
			}{
				{"unmatched path", "POST", "/admin", "application/json", `{}`, 404},
				{"unmatched method", "GET", "/signup", "", "", 404},
				{"invalid card", "POST", "/signup", "application/json", `{"card":{"number":"12"}}`, 422},
				{"number where a string is", "POST", "/signup", "application/json", `{"card":{"number":4111111111111111}}`, 422},
				{"malformed json", "POST", "/signup", "application/json", `{"card":`, 400},
				{"text body on a tokenizing route", "POST", "/signup", "text/plain", `{"card":{"number":"4111111111111111"}}`, 415},
				{"over the body limit", "POST", "/signup", "application/json", `{"x":"` + strings.Repeat("a", 70000) + `"}`, 413},
				{"not allowed to tokenize ssn", "POST", "/ssn", "application/json", `{"ssn":"123-45-6789"}`, 403},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var body io.Reader
					if tc.body != "" {
						body = strings.NewReader(tc.body)
						if tc.name == "streamed body over the limit" {
							body = io.MultiReader(strings.NewReader(tc.body)) // no length: chunked
						}
					}
					st, h, b := e.send(tc.method, tc.path, tc.ctype, body)
					if st != tc.want || !strings.HasPrefix(h.Get("Content-Type"), "application/problem+json") {
						t.Fatalf("%d %s %s, want %d problem+json", st, h.Get("Content-Type"), b, tc.want)
					}
					if bytes.Contains(b, []byte("4111")) || bytes.Contains(b, []byte("6789")) {
						t.Fatalf("the problem repeats a value: %s", b)
					}
				})
			}
			if got := e.app.count(); got != before {
				t.Fatalf("%d refused requests reached the application", got-before)
			}
			// A streamed body (a route that transforms nothing) over the
			// limit is cut off there: the upstream never gets all of it.
			st, _, b := e.send("PUT", "/files/big", "application/octet-stream", io.MultiReader(strings.NewReader(strings.Repeat("a", 70000))))
			if st != 413 {
				t.Fatalf("streamed body over the limit: %d %s", st, b)
			}
			if e.app.count() > before && len(e.app.last(t).body) >= 70000 {
				t.Fatal("the upstream got a whole body over the limit")
			}
			// An unknown token is never sent on.
			third := e.third.count()
			if st, _, b := e.send("POST", "/pay", "application/json", strings.NewReader(`{"card":"tok_cc_nosuchtoken000000000000"}`)); st != 422 {
				t.Fatalf("unknown token: %d %s", st, b)
			}
			if e.third.count() != third {
				t.Fatal("a request whose token could not be detokenized reached the third party")
			}
		})

		t.Run("upstream failures", func(t *testing.T) {
			if st, _, b := e.send("GET", "/dead", "", nil); st != 502 {
				t.Fatalf("unreachable upstream: %d %s", st, b)
			}
			if st, _, b := e.send("GET", "/slow", "", nil); st != 504 {
				t.Fatalf("stalled upstream: %d %s", st, b)
			}
			e.app.setAnswer(func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(503)
				_, _ = w.Write([]byte(`{"error":"down"}`))
			})
			defer e.app.setAnswer(nil)
			if st, _, b := e.send("GET", "/files/x", "", nil); st != 503 || string(b) != `{"error":"down"}` {
				t.Fatalf("an upstream's error passes through: %d %s", st, b)
			}
			// A response the route must transform but cannot read is not
			// returned: it could hold a listed field.
			e.app.setAnswer(func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte(`<p>card 4111111111111111</p>`))
			})
			if st, _, b := e.send("POST", "/signup", "application/json", strings.NewReader(`{}`)); st != 502 || bytes.Contains(b, []byte("4111")) {
				t.Fatalf("unreadable answer: %d %s", st, b)
			}
		})

		t.Run("audit and metrics", func(t *testing.T) {
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			var events []map[string]any
			deadline := time.Now().Add(30 * time.Second)
			var raw []byte
			for {
				st, _, b := n.do("GET", "/v1/audit/events?limit=1000&principal="+url.QueryEscape(e.clientID), tok, "", nil)
				if st != 200 {
					t.Fatalf("audit: %d %s", st, b)
				}
				var page struct{ Events []map[string]any }
				mustJSON(t, b, &page)
				events, raw = page.Events, b
				if len(events) > 0 || time.Now().After(deadline) {
					break
				}
			}
			for _, secret := range []string{card, email, cardToken, "123-45-6789"} {
				if bytes.Contains(raw, []byte(secret)) {
					t.Fatalf("the audit log holds a value or token %q", secret)
				}
			}
			var signup, release, pay bool
			for _, ev := range events {
				// Bad bodies are refused without a policy decision: callers
				// cannot make the relay's client a denied principal.
				if st, _ := ev["status"].(float64); (st == 400 || st == 415 || st == 422 || st == 413) && ev["decision"] == "deny" {
					t.Errorf("a refusal for the body's shape is recorded as a denial: %v", ev)
				}
				fields, _ := json.Marshal(ev["fields"])
				switch {
				case ev["action"] == "relay" && ev["resource"] == "relay/routes/signup" && ev["status"] == float64(200) &&
					strings.Contains(string(fields), "request.tokenize:card.number=1") && strings.Contains(string(fields), "upstream_status=200") &&
					strings.Contains(string(fields), "response.detokenize:received.card.number=1"):
					signup = true
				case ev["action"] == "relay.release" && ev["resource"] == "relay/routes/pay":
					release = true
				case ev["action"] == "relay" && ev["resource"] == "relay/routes/pay" && ev["decision"] == "allow" &&
					strings.Contains(string(fields), "response.mask:received.card=1"):
					pay = true
				}
			}
			if !signup || !release || !pay {
				t.Fatalf("audit events (signup %v, release %v, pay %v):\n%s", signup, release, pay, raw)
			}
			m := n.scrapeMetrics()
			for _, want := range []string{`coffer_relay_requests_total{outcome="forwarded",route="signup"}`,
				`coffer_relay_requests_total{outcome="refused",route="signup"}`, `coffer_relay_requests_total{outcome="unmatched",route="unmatched"}`,
				`coffer_relay_requests_total{outcome="unreachable",route="dead"} 1`, `coffer_relay_requests_total{outcome="timeout",route="slow"} 1`,
				`coffer_relay_request_duration_seconds_count{route="pay"}`} {
				if !strings.Contains(m, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
		})
	})
}

// TestRelayTLSVerified: an https upstream whose certificate does not chain
// to relay.upstream_ca_file (or the system roots) is never sent anything.
func TestRelayTLSVerified(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	e := startRelay(t, n)
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("an unverified upstream was reached")
	}))
	other.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	other.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	other.StartTLS()
	defer other.Close()
	cfg := n.Config()
	cfg.Relay.Routes[2].Upstream = other.URL
	if err := n.Srv.ReloadRelay(cfg); err != nil {
		t.Fatal(err)
	}
	if st, _, b := e.send("POST", "/pay", "application/json", strings.NewReader(`{"amount":1}`)); st != 502 {
		t.Fatalf("unverified upstream: %d %s", st, b)
	}
}

// selfSigned makes a certificate for 127.0.0.1 that no CA signed (unlike
// httptest's, which every httptest server shares).
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestRelayReloadAndClient: a reload swaps the routes at once, a bad one
// keeps the running routes, and a relay whose client is gone relays
// nothing.
func TestRelayReloadAndClient(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	e := startRelay(t, n)
	body := func() io.Reader { return strings.NewReader(`{"card":{"number":"4111111111111111"}}`) }
	cfg := n.Config()
	cfg.Relay.Routes[0].Match.Path = "/register"
	if err := n.Srv.ReloadRelay(cfg); err != nil {
		t.Fatal(err)
	}
	if st, _, b := e.send("POST", "/signup", "application/json", body()); st != 404 {
		t.Fatalf("old path after reload: %d %s", st, b)
	}
	if st, _, b := e.send("POST", "/register", "application/json", body()); st != 200 {
		t.Fatalf("new path after reload: %d %s", st, b)
	}
	bad := n.Config()
	bad.Relay.Routes[0].Request.Tokenize[0].Type = "pan"
	if err := n.Srv.ReloadRelay(bad); err == nil || !strings.Contains(err.Error(), `relay.routes[0].request.tokenize[0].type: "pan" is not a token type`) {
		t.Fatalf("bad reload: %v", err)
	}
	if st, _, b := e.send("POST", "/register", "application/json", body()); st != 200 {
		t.Fatalf("a bad reload must keep the running routes: %d %s", st, b)
	}
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	if st, _, b := n.do("DELETE", "/v1/clients/"+e.clientID, tok, "", nil); st != 204 {
		t.Fatalf("delete client: %d %s", st, b)
	}
	before := e.app.count()
	if st, _, b := e.send("POST", "/register", "application/json", body()); st != 503 {
		t.Fatalf("relay without its client: %d %s", st, b)
	}
	if e.app.count() != before {
		t.Fatal("a relay without its client forwarded a request")
	}
}
