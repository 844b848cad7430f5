package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// BenchmarkRelayVsReverseProxy compares, on the same machine and over
// the same HTTPS, a relayed request with two tokenized fields (a card
// number, format-preserving, and an email, deterministic: decided,
// quota-checked, stored and audited durably before the answer) with a
// plain httputil.ReverseProxy in front of the same upstream. The two run
// in alternating rounds of equal size (16 clients each), so that a load
// change on a shared host hits both; "relay/plain" is the relay's share
// of the plain proxy's requests per second (the target: ≥ 0.5).
func BenchmarkRelayVsReverseProxy(b *testing.B) {
	servingRuntime(b)
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			n := start(b, be, "COFFER_LIMITS_RATE_LIMIT=0", "COFFER_LIMITS_TOKENIZE_LINKABLE_PER_HOUR=0",
				"COFFER_DETECT_BULK_TOKENIZE_VALUES=100000000", "COFFER_DETECT_BULK_TOKENIZE_LINKABLE=100000000")
			e := startRelay(b, n)
			e.app.setAnswer(func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"ok":true}`))
			})
			e.app.mu.Lock()
			e.app.hits = nil
			e.app.mu.Unlock()
			target, _ := url.Parse(e.app.srv.URL)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			// The same server certificate and TLS settings as the relay's.
			plain := &http.Server{Handler: &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.SetXForwarded()
			}}, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = plain.Serve(tls.NewListener(ln, n.Srv.TLSConfig())) }()
			defer plain.Close()
			plainURL := "https://" + ln.Addr().String()

			var seq atomic.Int64
			round := func(base string, count int) (time.Duration, error) {
				var wg sync.WaitGroup
				var failed atomic.Value
				var next atomic.Int64
				start := time.Now()
				for range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(count) {
							i := seq.Add(1)
							body := fmt.Sprintf(`{"name":"n%d","card":{"number":"4111111111111111"},"email":"user%d@example.com"}`, i, i)
							resp, err := n.HTTP.Post(base+"/signup", "application/json", strings.NewReader(body))
							if err != nil {
								failed.Store(err)
								return
							}
							_, _ = io.Copy(io.Discard, resp.Body)
							_ = resp.Body.Close()
							if resp.StatusCode != 200 {
								failed.Store(fmt.Errorf("%s: status %d", base, resp.StatusCode))
								return
							}
						}
					}()
				}
				wg.Wait()
				if err, _ := failed.Load().(error); err != nil {
					return 0, err
				}
				return time.Since(start), nil
			}
			const per = 500
			var tPlain, tRelay time.Duration
			rounds := 0
			b.ResetTimer()
			for b.Loop() {
				dp, err := round(plainURL, per)
				if err != nil {
					b.Fatal(err)
				}
				dr, err := round(e.url, per)
				if err != nil {
					b.Fatal(err)
				}
				tPlain, tRelay = tPlain+dp, tRelay+dr
				rounds++
			}
			b.StopTimer()
			b.ReportMetric(float64(rounds*per)/tPlain.Seconds(), "plain_req/s")
			b.ReportMetric(float64(rounds*per)/tRelay.Seconds(), "relay_req/s")
			b.ReportMetric(tPlain.Seconds()/tRelay.Seconds(), "relay/plain")
		})
	}
}
