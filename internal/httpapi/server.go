package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/idempotency"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/pki"
	"github.com/cofferhq/coffer/internal/policystore"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
)

// Authenticator authenticates a request's caller: all the server's stack
// needs of identity.
type Authenticator interface {
	// Authenticate verifies a bearer access token.
	Authenticate(ctx context.Context, token string) (*coffer.Principal, error)
	// AuthenticateClientCert signs in the client a verified client
	// certificate names.
	AuthenticateClientCert(ctx context.Context, clientID string) (*coffer.Principal, error)
}

// OAuth issues and revokes access tokens (RFC 6749 client credentials,
// RFC 7009) and publishes the keys that verify them.
type OAuth interface {
	ClientCredentials(ctx context.Context, clientID string, clientSecret secret.Password, ip string) (identity.Issued, *coffer.Principal, error)
	// Revoke revokes an access token and returns its token id ("" when
	// the token does not verify: nothing was revoked).
	Revoke(ctx context.Context, token string) (string, error)
	JWKS() ([]byte, error)
}

// SignIn signs users in with a password and a second factor, and enrols
// a signed-in user's own second factor.
type SignIn interface {
	Login(ctx context.Context, username string, password secret.Password, ip string) (identity.LoginResult, error)
	CompleteMFA(ctx context.Context, mfaToken string, code secret.Password, ip string) (identity.Issued, *coffer.Principal, error)
	StartTOTP(ctx context.Context, p *coffer.Principal, issuer, enrolmentCode string) (identity.TOTPEnrolment, error)
	ConfirmTOTP(ctx context.Context, p *coffer.Principal, code string) error
}

// Introspector answers token introspection for a caller; it decides who
// may, before token reads the request.
type Introspector interface {
	Introspect(ctx context.Context, c coffer.Caller, token func() (string, error)) (identity.Introspection, error)
}

// Tokens tokenizes and detokenizes.
type Tokens interface {
	Tokenize(ctx context.Context, c vault.Caller, items []token.Item) ([]string, error)
	Detokenize(ctx context.Context, c vault.Caller, tokens []string) ([]string, error)
}

// Detector says which principals a security response suspended: the
// server refuses their every request.
type Detector interface {
	Suspended(id string) bool
}

// Quotas charges a principal's use against its quotas, across nodes.
type Quotas interface {
	// Take charges use (quota kind → units) to p, all or none, and returns
	// a refund for work then not done. Errors are *coffer.Error: 429 with
	// Retry-After over a quota, 413 for more than a whole quota at once,
	// 503 when the use cannot be counted.
	Take(ctx context.Context, p *coffer.Principal, use map[string]int) (refund func(context.Context), err error)
}

// Auditor writes one audit entry durably; an error fails the request.
// The server calls Audit with a context the caller cannot cancel (it
// outlives the connection, bounded by Config.AuditTimeout): a request
// whose handler ran is audited whether or not its caller is still there.
type Auditor interface {
	Audit(ctx context.Context, e Entry) error
}

// AuditHealth is what an Auditor may also offer: Healthy returns an error
// while audit events cannot be made durable. The server then refuses every
// audited request before its handler runs (503), so that no write is
// carried out while its audit event would be lost.
type AuditHealth interface {
	Healthy() error
}

// Entry is one request's audit record, before the audit log chains it:
// the domain's Access (internal/accesslog records it).
type Entry = coffer.Access

// Policies gives access to the policy document; each method decides
// whether the caller may (policystore.Holder).
type Policies interface {
	// Read returns the document in force and its format.
	Read(ctx context.Context, c coffer.Caller) (data []byte, format string, err error)
	// Explain decides the question read reads without acting on it.
	Explain(c coffer.Caller, read func() (policystore.Question, error)) (policystore.Answer, error)
	// Put replaces the policy for p calling from ip; unless force, a
	// document under which no principal could change the policy again is
	// refused (422 policy-lockout).
	Put(ctx context.Context, p *coffer.Principal, ip string, data []byte, format string, force bool, note *coffer.AccessNote) error
}

// Readiness reports whether a dependency is ready.
type Readiness func(ctx context.Context) error

// Observer is told about every finished request (for metrics).
type Observer func(route string, status int, d time.Duration)

// Config holds the server's dependencies and limits.
type Config struct {
	Vault  *vault.Vault
	Tokens Tokens
	// TransitKeys, TransitCrypto and TransitImport serve /v1/keys.
	TransitKeys   TransitKeys
	TransitCrypto TransitCrypto
	TransitImport TransitImport
	AuditLog      AuditLog
	Detector      Detector
	// Security serves the security events and suspensions.
	Security Security
	// Inspect finds and redacts sensitive data in free text.
	Inspect Inspector
	// Auth authenticates every request of an authenticated route.
	Auth Authenticator
	// OAuth serves the token endpoints, SignIn the users' sign-in.
	OAuth  OAuth
	SignIn SignIn
	// Clients and Users administer principals; Introspect answers token
	// introspection. Each decides who may (identityadmin.Admin).
	Clients    ClientAdmin
	Users      UserAdmin
	Introspect Introspector
	Policies   Policies
	Audit      Auditor
	// Quotas, if set, meters tokenization per principal.
	Quotas Quotas
	Logger *slog.Logger
	// PublicURL is the base URL clients use.
	PublicURL string
	// Issuer is the iss of the tokens this node issues, named by the
	// RFC 8414 metadata (default PublicURL).
	Issuer string
	// Ready lists named readiness checks for /readyz.
	Ready map[string]Readiness
	// MaxBodyBytes limits a request body (default 1 MiB).
	MaxBodyBytes int64
	// RateLimit and RateBurst limit each principal's requests per second
	// (0 = unlimited).
	RateLimit float64
	RateBurst int
	Observe   Observer
	Now       func() time.Time
	// HandlerTimeout bounds a handler's work, which the caller hanging up
	// does not cut short: DefaultHandlerTimeout when 0. It only keeps a
	// handler stuck on a dependency from living for ever.
	HandlerTimeout time.Duration
	// AuditTimeout bounds the wait for a request's audit write
	// (DefaultAuditTimeout when 0).
	AuditTimeout time.Duration
	// Unavailable, if set, tells the errors that mean the database cannot
	// be reached (store.IsUnavailable): they are answered 503 with
	// Retry-After, not 500.
	Unavailable func(error) bool
	// Idempotency, if set, runs the creates sent with an Idempotency-Key
	// header once per key and principal.
	Idempotency *idempotency.Keeper
	// Extra registers more routes (later capabilities) on the same stack.
	Extra func(r *Router)
}

// DefaultHandlerTimeout bounds one handler's work: far longer than any
// request takes (the slowest, making the RSA wrapping key, takes seconds).
const DefaultHandlerTimeout = 5 * time.Minute

// DefaultAuditTimeout bounds the wait for one request's audit write: well
// above the audit writer's own bound on a store append
// (audit.DefaultAppendTimeout), so that it ends only when the writer is
// stuck.
const DefaultAuditTimeout = 30 * time.Second

// Server is Coffer's HTTP handler.
type Server struct {
	c   Config
	mux *http.ServeMux

	limMu    sync.Mutex
	limiters map[string]*limiter

	routeList    []string
	prefixStyles []prefixStyle
}

type limiter struct {
	l    *rate.Limiter
	seen time.Time
}

// New builds the handler with every route.
func New(c Config) *Server {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.AuditTimeout <= 0 {
		c.AuditTimeout = DefaultAuditTimeout
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	s := &Server{c: c, mux: http.NewServeMux(), limiters: map[string]*limiter{}}
	s.routes()
	return s
}

// Call is one request in flight, handed to handlers.
type Call struct {
	W         http.ResponseWriter
	R         *http.Request
	Principal *coffer.Principal
	RequestID string
	IP        string
	Note      coffer.AccessNote
	// Attempted is the client or user id an authentication attempt named.
	Attempted string
	// header holds response headers set by the handler.
	header http.Header
	// authFailed is set when authentication refused the caller.
	authFailed bool
}

// Caller returns the vault caller of this call.
func (c *Call) Caller() vault.Caller {
	return vault.Caller{Principal: c.Principal, IP: c.IP, Note: &c.Note}
}

// caller returns the use-case caller of this call.
func (c *Call) caller() coffer.Caller {
	return coffer.Caller{Principal: c.Principal, IP: c.IP, Note: &c.Note}
}

// Reply is a handler's answer: a status and a body to encode as JSON
// (nil for no body), or raw bytes with a content type.
type Reply struct {
	Status      int
	Body        any
	Raw         []byte
	ContentType string
}

// HandlerFunc handles one call.
type HandlerFunc func(c *Call) (Reply, error)

// Route options.
const (
	public     = 1 << iota // no bearer token needed
	noAudit                // nothing worth auditing (health, metadata)
	idempotent             // a create: an Idempotency-Key header makes it run once (see once)
)

// Router registers routes on the server's stack.
type Router struct{ s *Server }

// Handle registers an authenticated, audited route.
func (rt *Router) Handle(pattern string, h HandlerFunc) { rt.s.handle(pattern, 0, h) }

// HandleStyled registers an authenticated, audited route that speaks
// another API's dialect (st): its errors, and the header its callers send
// their access token in. The stack — authentication, policy, rate limit,
// audit before the answer — is the same as every route's.
func (rt *Router) HandleStyled(pattern string, st *Style, h HandlerFunc) {
	rt.s.handleStyled(pattern, 0, st, h)
}

// StylePrefix makes the 404 and 405 answers for paths under prefix (no
// route of the mux matched them) speak st's dialect too.
func (rt *Router) StylePrefix(prefix string, st *Style) {
	rt.s.prefixStyles = append(rt.s.prefixStyles, prefixStyle{prefix: prefix, st: st})
}

// Style is a route's dialect: how its errors look and where its callers
// put their access token. The zero Style, and a nil one, is Coffer's own
// (RFC 9457 problems, Authorization: Bearer).
type Style struct {
	// TokenHeader, when set, is a header that carries an access token as
	// Authorization: Bearer does (the Vault-compatible surface's
	// X-Vault-Token); Authorization is still read first.
	TokenHeader string
	// Status maps an error to the status its answer has; nil is Coffer's
	// table. The audit event records this status.
	Status func(err error) int
	// Write writes the answer to err and returns its status, which must be
	// Status(err). It must hold only err's client-safe message
	// (coffer.ErrorMessage), never a cause.
	Write func(w http.ResponseWriter, err error, requestID string) int
}

// prefixStyle is the dialect of unrouted paths under a prefix.
type prefixStyle struct {
	prefix string
	st     *Style
}

// status is the status of err's answer in st's dialect.
func (st *Style) status(err error, requestID string) int {
	if st != nil && st.Status != nil {
		return st.Status(err)
	}
	status, _ := problemFor(err, requestID)
	return status
}

// write writes the answer to err in st's dialect.
func (st *Style) write(w http.ResponseWriter, err error, requestID string) int {
	if st != nil && st.Write != nil {
		return st.Write(w, err, requestID)
	}
	return writeProblem(w, err, requestID)
}

func (s *Server) handle(pattern string, opts int, h HandlerFunc) {
	s.handleStyled(pattern, opts, nil, h)
}

func (s *Server) handleStyled(pattern string, opts int, st *Style, h HandlerFunc) {
	route := pattern
	s.routeList = append(s.routeList, pattern)
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, route, opts, st, h)
	}))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.unrouted(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// unrouted answers 404 or 405 as problem+json (the mux's own answers are
// plain text).
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	rid := newRequestID()
	w.Header().Set("X-Request-Id", rid)
	var st *Style
	for _, ps := range s.prefixStyles {
		if strings.HasPrefix(r.URL.Path, ps.prefix) {
			st = ps.st
		}
	}
	if rec.status == http.StatusMethodNotAllowed {
		if a := rec.header.Get("Allow"); a != "" {
			w.Header().Set("Allow", a)
		}
		st.write(w, &coffer.Error{Code: "method_not_allowed", Message: "method not allowed on this path"}, rid)
		return
	}
	st.write(w, coffer.Errorf(coffer.ENOTFOUND, "no such endpoint"), rid)
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(s int)           { r.status = s }

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// serve runs one call: authenticate, rate-limit, handle, audit, answer.
//
// The handler and the audit write run on contexts detached from the
// caller: a caller that hangs up once its request is sent can neither cut a
// write short halfway nor keep a write that was done out of the audit log.
// A request that was handled is audited, with the outcome it had.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, route string, opts int, st *Style, h HandlerFunc) {
	start := s.c.Now()
	audited := opts&noAudit == 0 && s.c.Audit != nil
	// The caller's cancellation ends neither the work nor its audit; each
	// has a bound of its own.
	detached := context.WithoutCancel(r.Context())
	ctx, cancel := context.WithTimeout(detached, s.c.HandlerTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	c := &Call{W: w, R: r, RequestID: newRequestID(), IP: clientIP(r), header: w.Header()}
	w.Header().Set("X-Request-Id", c.RequestID)
	r.Body = http.MaxBytesReader(w, r.Body, s.c.MaxBodyBytes)
	status := http.StatusInternalServerError
	defer func() {
		if s.c.Observe != nil {
			s.c.Observe(route, status, s.c.Now().Sub(start))
		}
	}()
	if audited {
		// Fail closed before acting: while audit events cannot be made
		// durable, nothing is done that would go unrecorded.
		if ah, ok := s.c.Audit.(AuditHealth); ok {
			if err := ah.Healthy(); err != nil {
				status = st.write(w, &coffer.Error{Code: coffer.EUNAVAILABLE, Cause: err, RetryAfterSeconds: 5,
					Message: "audit log unavailable; request not carried out"}, c.RequestID)
				return
			}
		}
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.c.Logger.Error("panic serving request", "route", route, "request_id", c.RequestID,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			status = st.write(w, errors.New("panic"), c.RequestID)
		}
	}()

	reply, err := s.run(c, opts, st, h)
	if err != nil && s.c.Unavailable != nil && coffer.ErrorCode(err) == coffer.EINTERNAL && s.c.Unavailable(err) {
		// A database outage (a restart, a failover): the caller retries.
		err = &coffer.Error{Code: coffer.EUNAVAILABLE, Cause: err, RetryAfterSeconds: 2,
			Message: "the database is unavailable; retry (a create with the same Idempotency-Key runs once)"}
	}
	var body []byte
	if err == nil {
		body, err = encodeReply(&reply)
	}
	if err != nil {
		status = st.status(err, c.RequestID)
		if status == http.StatusInternalServerError {
			s.c.Logger.Error("request failed", "route", route, "request_id", c.RequestID, "error", err)
		}
	} else {
		status = reply.Status
	}
	// Audit before the answer leaves; no audit, no answer.
	if audited && (c.Note.Action != "" || c.Principal != nil || c.Attempted != "" || status >= 400) {
		if c.Note.Action == "" {
			c.Note.Action = "request"
			c.Note.Resource = route
		}
		if c.Note.Decision == "" && status >= 400 {
			c.Note.Decision = "deny"
			if c.Note.Reason == "" {
				c.Note.Reason = http.StatusText(status)
			}
		}
		e := Entry{Time: start, RequestID: c.RequestID, Principal: c.Principal, AttemptedID: c.Attempted,
			SourceIP: c.IP, Status: status, AuthFailed: c.authFailed, Note: c.Note}
		actx, acancel := context.WithTimeout(detached, s.c.AuditTimeout)
		aerr := s.c.Audit.Audit(actx, e)
		acancel()
		if aerr != nil {
			// What the handler did stays done (its store writes are
			// committed): say what, by name, so it can be reconciled.
			s.c.Logger.Error("audit write failed: refusing to answer; the request's outcome is not in the audit log",
				"route", route, "request_id", c.RequestID, "action", c.Note.Action, "resource", c.Note.Resource,
				"targets", c.Note.Targets, "status", status, "error", aerr)
			status = st.write(w, &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "audit log unavailable; request not answered", RetryAfterSeconds: 5}, c.RequestID)
			return
		}
	}
	if err != nil {
		status = st.write(w, err, c.RequestID)
		return
	}
	if reply.ContentType != "" {
		w.Header().Set("Content-Type", reply.ContentType)
	}
	w.WriteHeader(reply.Status)
	if len(body) > 0 && r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func encodeReply(rp *Reply) ([]byte, error) {
	if rp.Status == 0 {
		rp.Status = http.StatusOK
	}
	if rp.Raw != nil {
		return rp.Raw, nil
	}
	if rp.Body == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(rp.Body); err != nil {
		return nil, fmt.Errorf("httpapi: encode answer: %w", err)
	}
	if rp.ContentType == "" {
		rp.ContentType = "application/json"
	}
	return buf.Bytes(), nil
}

func (s *Server) run(c *Call, opts int, st *Style, h HandlerFunc) (Reply, error) {
	if opts&public == 0 {
		p, err := s.authenticate(c, st)
		if err != nil {
			c.authFailed = coffer.ErrorCode(err) == coffer.EUNAUTHENTICATED
			return Reply{}, err
		}
		c.Principal = p
		if s.c.Detector != nil && s.c.Detector.Suspended(p.ID) {
			c.Note.Deny("principal suspended")
			return Reply{}, coffer.Errorf(coffer.EFORBIDDEN, "this principal is suspended by a security response; an admin can lift it")
		}
		if err := s.allow(p.ID); err != nil {
			return Reply{}, err
		}
		if opts&idempotent != 0 && s.c.Idempotency != nil {
			if keys := c.R.Header.Values(idempotency.Header); len(keys) > 0 {
				if len(keys) > 1 {
					return Reply{}, coffer.Errorf(coffer.EMALFORMED, "send one %s header", idempotency.Header)
				}
				return s.once(c, keys[0], h)
			}
		}
	}
	return h(c)
}

// authenticate reads the bearer token or, without one, a client
// certificate issued by Coffer's CA (verified by the TLS layer when client
// certificates are enabled).
//
// A styled route also takes the token in its own header (st.TokenHeader),
// when no Authorization header is sent.
func (s *Server) authenticate(c *Call, st *Style) (*coffer.Principal, error) {
	authz := c.R.Header.Get("Authorization")
	if authz == "" && st != nil && st.TokenHeader != "" {
		if tok := strings.TrimSpace(c.R.Header.Get(st.TokenHeader)); tok != "" {
			authz = "Bearer " + tok
		}
	}
	if authz == "" && c.R.TLS != nil && len(c.R.TLS.VerifiedChains) > 0 && len(c.R.TLS.VerifiedChains[0]) > 0 {
		if name, ok := pki.ClientName(c.R.TLS.VerifiedChains[0][0]); ok {
			p, err := s.c.Auth.AuthenticateClientCert(c.R.Context(), name)
			if err != nil {
				c.Attempted = name
				c.Note.Reason = "client certificate refused"
				return nil, err
			}
			return p, nil
		}
	}
	scheme, token, ok := strings.Cut(authz, " ")
	if authz == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		c.Note.Reason = "no bearer token"
		return nil, coffer.Errorf(coffer.EUNAUTHENTICATED, "a bearer access token is required")
	}
	p, err := s.c.Auth.Authenticate(c.R.Context(), strings.TrimSpace(token))
	if err != nil {
		c.Note.Reason = "invalid token"
		return nil, err
	}
	return p, nil
}

// allow applies the per-principal rate limit.
func (s *Server) allow(id string) error {
	if s.c.RateLimit <= 0 {
		return nil
	}
	now := s.c.Now()
	s.limMu.Lock()
	l, ok := s.limiters[id]
	if !ok {
		if len(s.limiters) > 100000 {
			for k, v := range s.limiters {
				if now.Sub(v.seen) > time.Minute {
					delete(s.limiters, k)
				}
			}
		}
		burst := s.c.RateBurst
		if burst <= 0 {
			burst = int(s.c.RateLimit) + 1
		}
		l = &limiter{l: rate.NewLimiter(rate.Limit(s.c.RateLimit), burst)}
		s.limiters[id] = l
	}
	l.seen = now
	ok = l.l.AllowN(now, 1)
	s.limMu.Unlock()
	if !ok {
		return &coffer.Error{Code: coffer.ERATELIMIT, Message: "rate limit exceeded", RetryAfterSeconds: 1}
	}
	return nil
}
