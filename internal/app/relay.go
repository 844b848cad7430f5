package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/mask"
	"github.com/cofferhq/coffer/internal/metrics"
	"github.com/cofferhq/coffer/internal/relay"
)

// openRelay builds the relay when relay.listen is set (nil otherwise).
func (s *Server) openRelay(c *components) (*relay.Relay, error) {
	rc := s.cfg.Relay
	if rc.Listen == "" {
		return nil, nil
	}
	tr, err := relayTransport(rc)
	if err != nil {
		return nil, err
	}
	m := s.metrics
	for _, rt := range rc.Routes {
		for _, o := range relay.Outcomes() {
			m.RelayRequests.WithLabelValues(rt.Name, o) // exported at 0
		}
	}
	client := rc.Client
	r, err := relay.New(relay.Config{
		Client: client,
		Principal: func(ctx context.Context) (*coffer.Principal, error) {
			return c.identity.AuthenticateClientCert(ctx, client)
		},
		Suspended:    s.detector.Suspended,
		Tokens:       c.tokens,
		Quotas:       s.quotas(c),
		Masker:       mask.New(nil),
		Audit:        relayAuditor{w: s.audit, d: s.detector, m: m, discard: c.opts.AuditDiscard},
		Transport:    tr,
		MaxBodyBytes: s.cfg.Limits.MaxBodyBytes,
		Observe: func(route, outcome string, d time.Duration) {
			m.RelayRequests.WithLabelValues(route, outcome).Inc()
			m.RelayLatency.WithLabelValues(route).Observe(d.Seconds())
		},
		Logger: s.log,
		Now:    c.opts.Now,
	}, rc.Routes)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	return r, nil
}

// relayTransport reaches the upstreams: certificates verified (against
// relay.upstream_ca_file when set), no proxy from the environment, a bound
// on the wait for response headers.
func relayTransport(rc config.Relay) (*http.Transport, error) {
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

// RelayHandler returns the relay's handler: 503 while the server is
// sealed or the relay off.
func (s *Server) RelayHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rl := s.relay.Load(); rl != nil {
			rl.ServeHTTP(w, r)
			return
		}
		httpapi.WriteProblem(w, &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "the relay is not ready (sealed or off)", RetryAfterSeconds: 5}, "")
	})
}

// ServeRelay serves the relay over HTTPS (the server certificate) on ln
// until Shutdown.
func (s *Server) ServeRelay(ln net.Listener) error {
	cfg := s.cfg
	srv := &http.Server{
		Handler:           s.RelayHandler(),
		TLSConfig:         s.tlsCfg,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.Duration,
		ReadTimeout:       cfg.Timeouts.Read.Duration,
		WriteTimeout:      cfg.Timeouts.Write.Duration,
		IdleTimeout:       cfg.Timeouts.Idle.Duration,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.relaySrv = srv
	s.mu.Unlock()
	err := srv.Serve(tls.NewListener(ln, s.tlsCfg))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ReloadRelay takes the routes of cfg (a configuration loaded again on
// SIGHUP); invalid routes are refused and the running ones kept. The
// relay's listener, client and upstream settings change only on restart.
func (s *Server) ReloadRelay(cfg *config.Config) error {
	rl := s.relay.Load()
	if rl == nil {
		if cfg.Relay.Listen != "" {
			return errors.New("relay: not running (sealed, or off at start): restart to start it")
		}
		return nil
	}
	if cfg.Relay.Listen != s.cfg.Relay.Listen || cfg.Relay.Client != s.cfg.Relay.Client {
		s.log.Warn("relay: listen and client change only on restart; reloading the routes alone")
	}
	if err := rl.Reload(cfg.Relay.Routes); err != nil {
		return err
	}
	m := s.metrics
	for _, rt := range cfg.Relay.Routes {
		for _, o := range relay.Outcomes() {
			m.RelayRequests.WithLabelValues(rt.Name, o)
		}
	}
	s.log.Info("relay routes reloaded", "routes", len(cfg.Relay.Routes))
	return nil
}

// relayAuditor writes a relayed call's audit event and shows it to the
// detectors and the metrics, as auditAdapter does for an API call.
type relayAuditor struct {
	w       *audit.Writer
	d       *detect.Detector
	m       *metrics.Metrics
	discard bool
}

func (a relayAuditor) Healthy() error {
	if a.discard {
		return nil
	}
	return a.w.Healthy()
}

func (a relayAuditor) Audit(ctx context.Context, e relay.Event) error {
	ev := audit.Event{
		RequestID: e.RequestID, SourceIP: e.SourceIP, Action: e.Note.Action, Resource: e.Note.Resource,
		Fields: e.Note.Fields, Decision: e.Note.Decision, Rule: e.Note.Rule, Reason: e.Note.Reason,
		Status: e.Status, Count: e.Note.Count, ValueHMACs: e.Note.ValueHMACs, Targets: e.Note.Targets,
	}
	if e.Principal != nil {
		ev.PrincipalID, ev.PrincipalKind, ev.Roles = e.Principal.ID, e.Principal.Kind, e.Principal.Roles
	}
	var err error
	if !a.discard {
		err = a.w.Log(ctx, ev)
	}
	if err != nil && !errors.Is(err, audit.ErrNotDurable) {
		a.m.AuditFailures.Inc()
	}
	if e.Note.Action != "relay" {
		return err // a release: the call's own event follows
	}
	o := detect.Observation{
		Time: e.Time, SourceIP: e.SourceIP, Action: e.Note.Action, Resource: e.Note.Resource,
		Decision: e.Note.Decision, Status: e.Status, Count: e.Tokenized, Values: e.Note.Values,
		Linkable: e.Note.Linkable, Missing: e.Note.Missing, Canary: e.Note.Canary,
	}
	if e.Principal != nil {
		o.PrincipalID, o.PrincipalKind, o.Roles = e.Principal.ID, e.Principal.Kind, e.Principal.Roles
	}
	a.d.Observe(ctx, o)
	if e.Note.Decision == "allow" || e.Note.Decision == "deny" {
		a.m.Decisions.WithLabelValues(e.Note.Decision).Inc()
	}
	if e.Tokenized > 0 {
		a.m.TokenValues.WithLabelValues("tokenize").Add(float64(e.Tokenized))
	}
	if e.Detokenized > 0 {
		a.m.TokenValues.WithLabelValues("detokenize").Add(float64(e.Detokenized))
	}
	return err
}
