package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/unseal"
	"github.com/cofferhq/coffer/internal/keyadmin"
)

// KeyAdmin administers Coffer's own keys on an operator's request
// (keyadmin.Admin). Each method decides whether the caller may (policy
// action admin on system/keys/KEY_ID) and notes the call for the audit
// log. Errors are *coffer.Error for what the caller got wrong; anything
// else is internal.
type KeyAdmin interface {
	// RotateKey makes a new version of keyID the one that encrypts.
	RotateKey(ctx context.Context, c keyadmin.Caller, keyID string) (keyadmin.KeyRotation, error)
	// RetireKey stops version from decrypting, once no stored value is
	// sealed under it and no node can still seal under it.
	RetireKey(ctx context.Context, c keyadmin.Caller, keyID string, version uint32) (keyadmin.KeyVersionChange, error)
	// UnretireKey makes a retired version decrypt again.
	UnretireKey(ctx context.Context, c keyadmin.Caller, keyID string, version uint32) (keyadmin.KeyVersionChange, error)
	// DestroyKey erases a retired version for good.
	DestroyKey(ctx context.Context, c keyadmin.Caller, keyID string, version uint32) (keyadmin.KeyVersionChange, error)
	// RevokeSigningKey deletes signing key kid (making a new active key
	// first when it is the active one), so that every token it signed is
	// refused on every node. ENOTFOUND for an unknown kid.
	RevokeSigningKey(ctx context.Context, c keyadmin.Caller, kid string) (keyadmin.SigningKeyRevocation, error)
}

// KeyAdminRoutes returns the routes of Coffer's own key administration,
// for Config.Extra:
//
//	POST /v1/admin/keys/rotate {"key_id": "collection/customers"}
//
// key_id is one of the keys the KeyAdmin rotates: collection/NAME,
// subject/NAME, index/COLLECTION/FIELD, mask/hash/COLLECTION/FIELD,
// tokens/TYPE[/fpe|/deterministic],
// audit/hmac and audit/signing (the audit log goes on under the new
// version; the old ones stay to verify it) and jwt/signing.
//
// Old versions of the keys that seal stored values (collection/NAME,
// subject/ID, tokens/TYPE) can be ended:
//
//	POST /v1/admin/keys/retire   {"key_id": "collection/customers", "version": 1}
//	POST /v1/admin/keys/unretire {"key_id": "collection/customers", "version": 1}
//	POST /v1/admin/keys/destroy  {"key_id": "collection/customers", "version": 1}
//
// and a leaked access token signing key is dropped at once (every token it
// signed is refused):
//
//	POST /v1/admin/keys/revoke-signing {"kid": "…"}
//
// The caller needs action admin on resource system/keys/KEY_ID (a policy
// grants it with "system/keys/*", or narrower with
// "system/keys/collection/*"; revoke-signing on system/keys/jwt/signing):
// Coffer's own keys have a namespace of their own, which no transit key
// pattern (keys/…) reaches. The audit log records each call as action
// keys.rotate, keys.retire, keys.unretire, keys.destroy or
// keys.revoke_signing on system/keys/KEY_ID (…/versions/N for one
// version, system/keys/jwt/signing/kids/KID for a signing key).
func KeyAdminRoutes(admin KeyAdmin) func(*Router) {
	return func(rt *Router) {
		keyVersionRoutes(rt, admin)
		rt.Handle("POST /v1/admin/keys/revoke-signing", func(c *Call) (Reply, error) {
			c.Note.Target("keys.revoke_signing", "keys")
			var req struct {
				KID string `json:"kid"`
			}
			if err := decodeJSON(c.R, &req); err != nil {
				return Reply{}, err
			}
			return reply(admin.RevokeSigningKey(c.R.Context(), keyCaller(c), req.KID))
		})
		rt.Handle("POST /v1/admin/keys/rotate", func(c *Call) (Reply, error) {
			c.Note.Target("keys.rotate", "keys")
			var req struct {
				KeyID string `json:"key_id"`
			}
			if err := decodeJSON(c.R, &req); err != nil {
				return Reply{}, err
			}
			return reply(admin.RotateKey(c.R.Context(), keyCaller(c), req.KeyID))
		})
	}
}

// reply answers out, or the error.
func reply[T any](out T, err error) (Reply, error) {
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: out}, nil
}

func keyCaller(c *Call) keyadmin.Caller {
	return keyadmin.Caller{Principal: c.Principal, IP: c.IP, Note: &c.Note}
}

// keyVersionRoutes adds the retire, unretire and destroy routes.
func keyVersionRoutes(rt *Router, admin KeyAdmin) {
	for _, r := range []struct {
		op string
		do func(context.Context, keyadmin.Caller, string, uint32) (keyadmin.KeyVersionChange, error)
	}{
		{"retire", admin.RetireKey},
		{"unretire", admin.UnretireKey},
		{"destroy", admin.DestroyKey},
	} {
		rt.Handle("POST /v1/admin/keys/"+r.op, func(c *Call) (Reply, error) {
			c.Note.Target("keys."+r.op, "keys")
			var req struct {
				KeyID   string  `json:"key_id"`
				Version *uint32 `json:"version"`
			}
			if err := decodeJSON(c.R, &req); err != nil {
				return Reply{}, err
			}
			var version uint32 // absent: refused as version 0
			if req.Version != nil {
				version = *req.Version
			}
			return reply(r.do(c.R.Context(), keyCaller(c), req.KeyID, version))
		})
	}
}

// SigningKeyID is the key id of the access token signing key (the
// system/keys/jwt/signing resource).
const SigningKeyID = keyadmin.SigningKeyID

// Paths a sealed server answers.
const (
	UnsealPath      = "/v1/sys/unseal"
	UnsealResetPath = "/v1/sys/unseal/reset"
	SealStatusPath  = "/v1/sys/seal-status"
)

// UnsealStatus is the answer of the unseal endpoints.
type UnsealStatus = unseal.Status

// SealedConfig configures the handler of a sealed server.
type SealedConfig struct {
	// Unseal takes one share in text form; it returns the progress and,
	// for a share refused, a *coffer.Error. It must never log the share.
	Unseal func(ctx context.Context, share string) (UnsealStatus, error)
	// Reset, if set, drops the shares held for a caller showing the reset
	// token (a *coffer.Error when it is wrong); nil answers 404.
	Reset func(ctx context.Context, token string) (UnsealStatus, error)
	// Status reports the progress.
	Status func() UnsealStatus
	// Logger receives one line per unseal attempt (the audit log is not
	// available while sealed): source address and outcome, never a share.
	Logger *slog.Logger
	// RatePerSecond and Burst limit unseal and reset attempts per source
	// address, IPv6 addresses per /64 (defaults 1 and 5).
	RatePerSecond float64
	Burst         int
	Now           func() time.Time
}

// NewSealed returns the handler of a server whose root key is still
// sealed: GET /healthz answers 200 (the process is alive), GET /readyz 503,
// POST /v1/sys/unseal {"share"} and GET /v1/sys/seal-status answer the
// progress, POST /v1/sys/unseal/reset {"reset_token"} drops the shares
// held, and every other request is a 503 problem with Retry-After. The
// unseal route needs no token (nothing can verify one yet): a share is
// checked against the commitments of the check blob, and the routes are
// rate-limited per source address (per /64 for IPv6).
func NewSealed(c SealedConfig) http.Handler {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RatePerSecond <= 0 {
		c.RatePerSecond = 1
	}
	if c.Burst <= 0 {
		c.Burst = 5
	}
	return &sealedHandler{c: c, limiters: map[string]*limiter{}}
}

type sealedHandler struct {
	c        SealedConfig
	mu       sync.Mutex
	limiters map[string]*limiter
}

// sealedRetry is the Retry-After of a sealed server's 503s.
const sealedRetry = 5

func (h *sealedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	rid := newRequestID()
	w.Header().Set("X-Request-Id", rid)
	switch {
	case r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "sealed": true})
	case r.URL.Path == "/readyz" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		w.Header().Set("Retry-After", itoa(sealedRetry))
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "sealed", "checks": map[string]string{"keys": "sealed"}})
	case r.URL.Path == SealStatusPath && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, h.c.Status())
	case r.URL.Path == UnsealPath && r.Method == http.MethodPost:
		h.unseal(w, r, rid)
	case r.URL.Path == UnsealResetPath && r.Method == http.MethodPost && h.c.Reset != nil:
		h.reset(w, r, rid)
	case r.URL.Path == UnsealResetPath && h.c.Reset == nil:
		writeProblem(w, coffer.Errorf(coffer.ENOTFOUND, "no such endpoint"), rid)
	case r.URL.Path == UnsealPath || r.URL.Path == UnsealResetPath || r.URL.Path == SealStatusPath:
		writeProblem(w, &coffer.Error{Code: "method_not_allowed", Message: "method not allowed on this path"}, rid)
	default:
		writeProblem(w, &coffer.Error{Code: coffer.EUNAVAILABLE, RetryAfterSeconds: sealedRetry,
			Message: "sealed: the server waits for root key shares (POST " + UnsealPath + ")"}, rid)
	}
}

func (h *sealedHandler) unseal(w http.ResponseWriter, r *http.Request, rid string) {
	var req struct {
		Share string `json:"share"`
	}
	h.call(w, r, rid, "unseal", &req, func(ctx context.Context) (UnsealStatus, error) {
		st, err := h.c.Unseal(ctx, req.Share)
		req.Share = ""
		return st, err
	})
}

// reset drops the shares held, for a caller with the reset token.
func (h *sealedHandler) reset(w http.ResponseWriter, r *http.Request, rid string) {
	var req struct {
		ResetToken string `json:"reset_token"`
	}
	h.call(w, r, rid, "unseal_reset", &req, func(ctx context.Context) (UnsealStatus, error) {
		return h.c.Reset(ctx, req.ResetToken)
	})
}

// call answers one rate-limited POST of a sealed server: req decoded from
// the body, then do, logged as event with the source address and the
// outcome (never the body).
func (h *sealedHandler) call(w http.ResponseWriter, r *http.Request, rid, event string, req any, do func(context.Context) (UnsealStatus, error)) {
	ip := clientIP(r)
	log := h.c.Logger.With("event", event, "source_ip", ip, "request_id", rid)
	if !h.allow(ip) {
		log.Warn(event + " attempt rate limited")
		writeProblem(w, &coffer.Error{Code: coffer.ERATELIMIT, Message: "too many unseal attempts", RetryAfterSeconds: 1}, rid)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := decodeJSON(r, req); err != nil {
		log.Warn(event+" attempt refused", "reason", "malformed request")
		writeProblem(w, err, rid)
		return
	}
	st, err := do(r.Context())
	if err != nil {
		status, _ := problemFor(err, rid)
		log.Warn(event+" attempt refused", "status", status, "reason", coffer.ErrorMessage(err),
			"progress", st.Progress, "threshold", st.Threshold)
		writeProblem(w, err, rid)
		return
	}
	log.Info(event+" accepted", "progress", st.Progress, "threshold", st.Threshold, "sealed", st.Sealed)
	writeJSON(w, http.StatusOK, st)
}

// allow applies the per-address limit on unseal attempts: per address,
// and per /64 for IPv6, where one host commonly holds a whole /64.
func (h *sealedHandler) allow(ip string) bool {
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
		if p, err := a.Prefix(64); err == nil {
			ip = p.String()
		}
	}
	now := h.c.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	l, ok := h.limiters[ip]
	if !ok {
		if len(h.limiters) > 10000 {
			for k, v := range h.limiters {
				if now.Sub(v.seen) > time.Minute {
					delete(h.limiters, k)
				}
			}
		}
		l = &limiter{l: rate.NewLimiter(rate.Limit(h.c.RatePerSecond), h.c.Burst)}
		h.limiters[ip] = l
	}
	l.seen = now
	return l.l.AllowN(now, 1)
}

// securityHeaders sets the headers every answer carries.
func securityHeaders(h http.Header) {
	h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	rp := Reply{Status: status, Body: v}
	b, err := encodeReply(&rp)
	if err != nil {
		writeProblem(w, err, "")
		return
	}
	w.Header().Set("Content-Type", rp.ContentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
