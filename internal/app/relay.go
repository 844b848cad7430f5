package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/mask"
	"github.com/cofferhq/coffer/internal/relay"
)

// openRelay builds the relay when relay.listen is set (nil otherwise).
func (s *Server) openRelay(c *components) (*relay.Relay, error) {
	rc := s.cfg.Relay
	if rc.Listen == "" {
		return nil, nil
	}
	tr, err := relay.NewTransport(rc)
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
		Audit:        s.recorder(),
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
