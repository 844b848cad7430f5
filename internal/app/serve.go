package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/internal/accesslog"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/cluster"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/console"
	"github.com/cofferhq/coffer/internal/crypto/unseal"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/idempotency"
	"github.com/cofferhq/coffer/internal/identityadmin"
	"github.com/cofferhq/coffer/internal/inspect"
	"github.com/cofferhq/coffer/internal/keyadmin"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/metrics"
	"github.com/cofferhq/coffer/internal/pki"
	"github.com/cofferhq/coffer/internal/quota"
	"github.com/cofferhq/coffer/internal/relay"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultcompat"
	"github.com/cofferhq/coffer/internal/witness"
)

// Server is a running Coffer node.
type Server struct {
	cfg     *config.Config
	opts    Options
	c       *components
	api     *httpapi.Server
	audit   *audit.Writer
	metrics *metrics.Metrics
	tlsCfg  *tls.Config
	httpSrv *http.Server
	metSrv  *http.Server
	cancel  context.CancelFunc
	jobs    *lifecycle.Jobs
	// detector watches every audited request for anomalies.
	detector *detect.Detector
	log      *slog.Logger

	// A shamir deployment starts sealed: gate gathers the shares and
	// sealedH answers until the components are built.
	gate    *unseal.Gate
	sealedH http.Handler
	// admin administers Coffer's own keys (the API and the automatic
	// rotation).
	admin *keyadmin.Admin
	// live is the API once the components are built.
	live atomic.Pointer[httpapi.Server]
	// ui is the web console over live (nil when console.disabled).
	ui atomic.Pointer[console.Console]
	// mu serialises building the components (on unseal) with Shutdown.
	mu     sync.Mutex
	closed bool

	// relay is the relay once the components are built (nil while sealed
	// or when relay.listen is empty); relaySrv serves it.
	relay    atomic.Pointer[relay.Relay]
	relaySrv *http.Server

	// member holds this node's lease on its node id.
	member *cluster.Member
	// follower listens for what other nodes change (PostgreSQL only).
	follower *cluster.Follower

	// witness delivers the audit checkpoints to audit.witness (nil when
	// none is configured); the audit writer owns and closes it.
	witness *witness.Sink
}

// Open builds a server from cfg and starts its background work (key and
// revocation refresh, policy watch, audit writer). It fails before
// listening on a bad config, a wrong root key or an outdated schema.
//
// With the shamir root key provider the server opens sealed: it serves
// /healthz, a 503 /readyz and POST /v1/sys/unseal, and answers every other
// route 503 until enough root key shares have been posted; then it builds
// its components (and checks the root key) and serves normally.
func Open(ctx context.Context, cfg *config.Config, o Options) (*Server, error) {
	if !o.Migrate && cfg.Dev {
		o.Migrate = true
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, opts: o, metrics: metrics.New(), log: o.Logger}
	if cfg.RootKey.Provider == config.ProviderShamir && o.provider == nil {
		p, err := unseal.OpenSealed(cfg, o.Rand)
		if err != nil {
			return nil, err
		}
		s.gate = unseal.NewGate(unseal.GateConfig{Sealed: p, CheckFile: cfg.RootKey.CheckFile, ResetFile: unseal.ResetFile(cfg),
			Logger: s.log, Start: s.start, Live: func() bool { return s.live.Load() != nil }})
		s.sealedH = httpapi.NewSealed(httpapi.SealedConfig{Unseal: s.gate.Unseal, Reset: s.gate.Reset, Status: s.gate.Status, Logger: s.log, Now: o.Now})
		if err := s.initHTTP(); err != nil {
			return nil, err
		}
		s.gate.Wait(o.Rand)
		return s, nil
	}
	if err := s.build(ctx, o); err != nil {
		return nil, err
	}
	if err := s.initHTTP(); err != nil {
		s.teardown()
		return nil, err
	}
	return s, nil
}

// build opens the components and starts the background work and the API.
func (s *Server) build(ctx context.Context, o Options) error {
	cfg := s.cfg
	c, err := open(ctx, cfg, o)
	if err != nil {
		return err
	}
	s.c = c
	host, _ := os.Hostname()
	s.member, err = cluster.Join(ctx, cluster.Config{
		Store: c.db, Node: cfg.Node, Host: host, Version: cmp.Or(o.Version, "dev"), Schema: c.schema,
		TTL: o.NodeLeaseTTL, Heartbeat: o.NodeHeartbeat, Now: c.opts.Now, Rand: c.opts.Rand, Logger: s.log,
		Hint: cluster.LeaseHint(cfg.DataDir, !cfg.Derived("node")),
	})
	if err != nil {
		c.Close()
		s.c = nil
		return err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.member.Run(bg)
	fail := func(err error) error {
		cancel()
		_ = s.member.Leave(context.WithoutCancel(ctx))
		s.member = nil
		c.Close()
		s.c = nil
		return err
	}
	if err := c.identity.Start(bg); err != nil {
		return fail(err)
	}
	go c.policies.Watch(bg, cmp.Or(o.PollInterval, 2*time.Second))
	s.jobs = lifecycle.New(keyadmin.MeterJobs(lifecycle.Config{
		Store: c.db, Keys: c.keys, Node: cfg.Node, Now: c.opts.Now, Logger: s.log,
		Rotation: keyadmin.AutoRotation(cfg.Keys, c.keys, s.metrics, func() *keyadmin.Admin { return s.admin }),
		Reindex: func(ctx context.Context) (int, error) {
			rep, err := c.vault.Reindex(ctx, 500)
			return rep.Moved, err
		},
		ReindexProgress: c.vault.ReindexProgress,
		Authz:           c.policies,
	}, s.metrics))
	s.admin = keyadmin.New(keyadmin.Config{Store: c.db, Keys: c.keys, SigningKeys: c.identity, Jobs: s.jobs,
		Policies: c.policies, Now: c.opts.Now, Logger: s.log, RetireAfter: o.RetireAfter,
		ReindexDelay: c.vault.ReindexDelay, Background: bg})
	go s.jobs.Run(bg, time.Minute)
	go lifecycle.FlushEvery(bg, 5*time.Second, s.log, c.useCounts()...)

	if s.audit, s.witness, err = auditadmin.OpenWriter(bg, auditadmin.WriterConfig{Audit: cfg.Audit, Store: c.db, Keys: c.keys,
		Node: cfg.Node, DataDir: cfg.DataDir, Now: c.opts.Now, Logger: s.log, Metrics: s.metrics,
		MaxBatch: o.AuditMaxBatch, GatherGap: o.AuditGatherGap, FlushFloor: o.AuditFlushFloor}); err != nil {
		return fail(err)
	}
	if s.detector, err = s.openDetector(bg); err != nil {
		_ = s.audit.Close(context.WithoutCancel(ctx))
		return fail(err)
	}
	auditLog := auditadmin.NewServingQuery(bg, auditadmin.ArchiveConfig{DB: c.db, Keys: c.keys, Audit: cfg.Audit, Holder: cfg.Node, Now: c.opts.Now, Logger: s.log, Log: s.audit.Log}, s.metrics, c.policies)
	principals := identityadmin.New(c.policies, c.identity, c.identity, c.identity)
	ready := map[string]httpapi.Readiness{
		"store": c.db.Ping,
		"keys":  c.keys.Check,
		"audit": func(context.Context) error { return s.audit.Healthy() },
		"node":  func(context.Context) error { return s.member.Healthy() },
	}
	if s.witness != nil {
		ready["witness"] = s.witness.Ready
	}
	if c.db.Dialect() == store.Postgres {
		s.follower = cluster.NewFollower(cluster.FollowConfig{
			Listen:  c.db.ListenChanges,
			Changed: func(table string) { s.changed(bg, table) },
			Resync: func(ctx context.Context) {
				for _, t := range changeTables {
					s.changed(ctx, t)
				}
			},
			Now: c.opts.Now, Logger: s.log,
		})
		go s.follower.Run(bg)
		ready["changes"] = func(context.Context) error { return s.follower.Healthy() }
	}
	s.api = httpapi.New(httpapi.Config{
		Vault:         c.vault,
		Tokens:        c.tokens,
		TransitKeys:   c.transit,
		TransitCrypto: c.transit,
		TransitImport: c.transit,
		AuditLog:      auditLog,
		Auth:          c.identity,
		OAuth:         c.identity,
		SignIn:        c.identity,
		Clients:       principals,
		Users:         principals,
		Introspect:    principals,
		Policies:      c.policies,
		Audit:         s.recorder(),
		Quotas:        s.quotas(c),
		Detector:      s.detector,
		Security:      detect.NewResponse(s.detector, c.policies),
		Inspect:       inspect.New(c.policies),
		Logger:        c.opts.Logger,
		PublicURL:     cfg.PublicURL,
		Issuer:        c.issuer,
		MaxBodyBytes:  cfg.Limits.MaxBodyBytes,
		RateLimit:     cfg.Limits.RateLimit,
		RateBurst:     cfg.Limits.RateBurst,
		Observe:       s.metrics.ObserveRequest,
		Now:           c.opts.Now,
		Ready:         ready,
		Unavailable:   store.IsUnavailable,
		// A claim outlives any request (its handler's bound), unless its
		// node dies first.
		Idempotency: idempotency.New(idempotency.Config{Store: c.db, Sealer: c.keys, Decider: c.policies, Instance: s.member.Instance(),
			Claim: httpapi.DefaultHandlerTimeout + 10*time.Second, Now: c.opts.Now, Rand: c.opts.Rand}),
		Extra: func(rt *httpapi.Router) {
			httpapi.KeyAdminRoutes(s.admin)(rt)
			httpapi.NodeRoutes(cluster.NewDirectory(c.db, c.policies), cfg.Node, c.opts.Now)(rt)
			httpapi.JobRoutes(func(ctx context.Context, cl coffer.Caller) (any, error) { return s.jobs.Progress(ctx, cl) })(rt)
			if cfg.TransitCompat { // the Vault-compatible transit surface
				vaultcompat.Routes(vaultcompat.Config{Transit: c.transit, Mount: cfg.TransitCompatMount})(rt)
			}
		},
	})
	if ci, err := pki.CertInfo(cfg.TLS.CertFile); err == nil {
		s.metrics.CertExpiry.Set(float64(ci.NotAfter.Unix()))
	}
	if !cfg.Console.Disabled {
		ui, err := console.New(console.Config{API: s.api, Authenticate: c.identity.Authenticate, Now: c.opts.Now,
			Rand: c.opts.Rand, Logger: s.log, IdleTimeout: cfg.Console.IdleTimeout.Duration,
			ReauthMaxAge: cfg.Auth.ReauthMaxAge.Duration})
		if err != nil {
			s.detector.Close()
			_ = s.audit.Close(context.WithoutCancel(ctx))
			return fail(err)
		}
		s.ui.Store(ui)
	}
	rl, err := s.openRelay(c)
	if err != nil {
		s.detector.Close()
		_ = s.audit.Close(context.WithoutCancel(ctx))
		return fail(err)
	}
	if rl != nil {
		s.relay.Store(rl)
	}
	s.live.Store(s.api)
	return nil
}

// initHTTP loads the TLS configuration and makes the HTTP server.
func (s *Server) initHTTP() error {
	cfg := s.cfg
	tlsOpts := pki.TLSOptions{OnReloadError: func(err error) {
		s.log.Error("server certificate reload failed; keeping the previous one", "error", err)
	}}
	if cfg.TLS.ClientCerts {
		// Only the CA certificate: the serving process never loads the CA key.
		pem, err := os.ReadFile(cfg.TLS.CAFile)
		if err != nil {
			return fmt.Errorf("TLS client certificates: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("TLS client certificates: no certificate in the CA file")
		}
		tlsOpts.ClientCAs, tlsOpts.VerifyClientCerts = pool, true
	}
	var err error
	s.tlsCfg, err = pki.ServerTLSConfig(cfg.TLS.CertFile, cfg.TLS.KeyFile, tlsOpts)
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	s.httpSrv = s.httpServer(s.Handler())
	return nil
}

// httpServer serves h over TLS with the configured timeouts (the API's and
// the relay's listener).
func (s *Server) httpServer(h http.Handler) *http.Server {
	t := s.cfg.Timeouts
	return &http.Server{Handler: h, TLSConfig: s.tlsCfg, ReadHeaderTimeout: t.ReadHeader.Duration, ReadTimeout: t.Read.Duration,
		WriteTimeout: t.Write.Duration, IdleTimeout: t.Idle.Duration, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
}

// Handler returns the HTTP handler (for tests that bring their own server):
// the API, or while sealed the sealed answers.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.sealedH != nil && (r.URL.Path == httpapi.UnsealPath || r.URL.Path == httpapi.UnsealResetPath || r.URL.Path == httpapi.SealStatusPath) {
			s.sealedH.ServeHTTP(w, r)
			return
		}
		if api := s.live.Load(); api != nil {
			if ui := s.ui.Load(); ui != nil && (strings.HasPrefix(r.URL.Path, console.Prefix) || r.URL.Path == "/ui") {
				if r.URL.Path == "/ui" {
					http.Redirect(w, r, console.Prefix, http.StatusMovedPermanently)
					return
				}
				ui.ServeHTTP(w, r)
				return
			}
			api.ServeHTTP(w, r)
			return
		}
		s.sealedH.ServeHTTP(w, r)
	})
}

// Sealed reports whether the server still waits for root key shares.
func (s *Server) Sealed() bool { return s.live.Load() == nil }

// Routes lists the API's route patterns (none while sealed).
func (s *Server) Routes() []string {
	if api := s.live.Load(); api != nil {
		return api.Routes()
	}
	return nil
}

// TLSConfig returns the server's TLS configuration.
func (s *Server) TLSConfig() *tls.Config { return s.tlsCfg }

// Listen opens the API listener on cfg.Listen, with a clear error when the
// port is in use.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen on %s: the address is already in use", addr)
		}
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves HTTPS on ln until Shutdown; it returns nil after a clean
// shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return served(s.httpSrv.Serve(tls.NewListener(ln, s.tlsCfg)))
}

// ServeMetrics serves /metrics on ln (plain HTTP on a loopback address by
// default; it carries no sensitive data).
func (s *Server) ServeMetrics(ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if !s.track(&s.metSrv, srv, ln) {
		return nil
	}
	return served(srv.Serve(ln))
}

// track keeps srv in *slot for Shutdown, which reads it under s.mu; once
// shutting down it closes ln instead and returns false.
func (s *Server) track(slot **http.Server, srv *http.Server, ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = ln.Close()
		return false
	}
	*slot = srv
	return true
}

// served is a server's end as Serve reports it: nil after Shutdown.
func served(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, drains in-flight requests, flushes the audit
// log and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock() // waits for an unseal that is building the components
	s.closed = true
	metSrv, relaySrv := s.metSrv, s.relaySrv
	s.mu.Unlock()
	if relaySrv != nil {
		// First: relayed calls use the API's components.
		_ = relaySrv.Shutdown(ctx)
	}
	err := s.httpSrv.Shutdown(ctx)
	if metSrv != nil {
		_ = metSrv.Shutdown(ctx)
	}
	if s.c == nil { // still sealed: nothing was built
		if s.gate != nil {
			s.gate.DropResetToken()
		}
		return err
	}
	// Seals a background job makes after this are not counted: they
	// are few, and the count only has to stay far below 2^32.
	lifecycle.FlushAll(ctx, s.log, s.c.useCounts()...)
	if aerr := s.audit.Close(ctx); aerr != nil && err == nil {
		err = fmt.Errorf("flush audit log: %w", aerr)
	}
	s.teardown()
	return err
}

// teardown stops the detectors and background work and closes the
// components.
func (s *Server) teardown() {
	if s.detector != nil {
		s.detector.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.member != nil {
		// After the last audit event: the id may be taken again at once.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.member.Leave(ctx); err != nil {
			s.log.Warn("node lease release failed; a restart waits for it to run out", "error", err)
		}
		cancel()
	}
	if s.c != nil {
		s.c.Close()
	}
}

// quotas meters each principal's tokenization against limits.*_per_hour,
// through the store's shared counters, counting refusals in the metrics.
func (s *Server) quotas(c *components) *quota.Meter {
	m := s.metrics
	for _, k := range quota.Kinds() {
		m.QuotaRefusals.WithLabelValues(k) // exported at 0
	}
	return quota.New(quota.FromConfig(s.cfg.Limits), c.db, c.opts.Now, func(kind string) { m.QuotaRefusals.WithLabelValues(kind).Inc() })
}

// recorder writes each answered request's audit event and shows it to
// the detectors and the metrics (the API's and the relay's).
func (s *Server) recorder() accesslog.Recorder {
	return accesslog.Recorder{Log: s.audit, Detector: s.detector, Metrics: s.metrics, Discard: s.c.opts.AuditDiscard}
}

// openDetector starts the anomaly detectors with their thresholds from config.
func (s *Server) openDetector(ctx context.Context) (*detect.Detector, error) {
	cfg, err := detect.FromConfig(s.c.cfg.Detect, s.c.opts.PollInterval)
	if err != nil {
		return nil, err
	}
	m := s.metrics
	for _, k := range detect.Kinds() {
		m.SecurityEvents.WithLabelValues(k) // exported at 0 so rate() sees the first event
	}
	d := detect.New(cfg, detect.Deps{
		Store: s.c.db, Logger: s.log, Now: s.c.opts.Now, Rand: s.c.opts.Rand,
		OnEvent: func(kind string) { m.SecurityEvents.WithLabelValues(kind).Inc() },
	})
	d.Start(ctx)
	return d, nil
}

// changeTables are the tables whose changes a node follows (migration
// 15's triggers announce them): what it caches of each.
var changeTables = []string{"policy", "revoked_tokens", "signing_keys", "clients", "users", "suspensions",
	"collections", "data_keys", "transit_keys"}

// changed reloads what this node caches of table, which another node (or
// an offline command) changed.
func (s *Server) changed(ctx context.Context, table string) {
	c := s.c
	switch table {
	case "policy":
		c.policies.Refresh(ctx)
	case "revoked_tokens", "signing_keys", "clients", "users":
		if err := c.identity.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("identity refresh after a change failed", "table", table, "error", err)
		}
	case "suspensions":
		s.detector.SyncSuspensions(ctx)
	case "collections":
		c.vault.ForgetSchemas()
	case "data_keys":
		c.keys.Expire()
	case "transit_keys":
		c.keys.Expire()
		c.transit.ForgetKeys()
	}
}

// start builds the components of a sealed server once its provider is
// unsealed (the gate's Start). It runs once; later calls return at once.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("shutting down")
	}
	if s.live.Load() != nil {
		return nil
	}
	o := s.opts
	o.provider = s.gate.Provider()
	return s.build(ctx, o)
}
