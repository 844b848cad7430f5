package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

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
	relay.ExportRoutes(s.metrics, rc.Routes)
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
		Observe:      relay.Metered(s.metrics),
		Logger:       s.log,
		Now:          c.opts.Now,
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
	srv := s.httpServer(s.RelayHandler())
	if !s.track(&s.relaySrv, srv, ln) {
		return nil
	}
	return served(srv.Serve(tls.NewListener(ln, s.tlsCfg)))
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
	relay.ExportRoutes(s.metrics, cfg.Relay.Routes)
	s.log.Info("relay routes reloaded", "routes", len(cfg.Relay.Routes))
	return nil
}
