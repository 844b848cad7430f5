package relay

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cofferhq/coffer/internal/config"
)

// NewTransport is the relay's way to its upstreams (Config.Transport) as
// rc configures it: certificates verified (against relay.upstream_ca_file
// when set), never a proxy from the environment, a bound on the wait for
// response headers.
func NewTransport(rc config.Relay) (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if rc.UpstreamCAFile != "" {
		pem, err := os.ReadFile(rc.UpstreamCAFile)
		if err != nil {
			return nil, fmt.Errorf("relay.upstream_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("relay.upstream_ca_file: no PEM certificate in it")
		}
		tc.RootCAs = pool
	}
	timeout := rc.UpstreamTimeout.Duration
	if timeout == 0 {
		timeout = config.DefaultRelayUpstreamTimeout
	}
	return &http.Transport{
		Proxy:                  nil, // never an environment proxy: values would pass through it
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        tc,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           512,
		MaxIdleConnsPerHost:    128,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}, nil
}
