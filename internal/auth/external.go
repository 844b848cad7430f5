package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cofferhq/coffer/internal/coffer"
)

// External-token limits and defaults.
const (
	// MaxExternalTokenLen bounds the external tokens Verify will parse;
	// larger than MaxTokenLen because identity providers put group lists
	// in their tokens.
	MaxExternalTokenLen = 16 << 10
	// DefaultExternalRolesClaim is the claim read for roles when none is configured.
	DefaultExternalRolesClaim = "roles"
	// DefaultExternalRefreshInterval is how long a fetched key set is used
	// before it is refreshed in the background.
	DefaultExternalRefreshInterval = 15 * time.Minute
	// DefaultExternalMinRefetchInterval is the shortest time between two
	// fetches of one issuer's keys, however many tokens with unknown key
	// ids arrive.
	DefaultExternalMinRefetchInterval = 10 * time.Second
	// DefaultExternalFetchTimeout bounds one discovery-and-JWKS fetch.
	DefaultExternalFetchTimeout = 10 * time.Second

	maxExternalDocBytes  = 1 << 20 // discovery document or JWKS
	maxExternalJWKSKeys  = 100
	maxExternalRedirects = 3
	maxExternalSubject   = 255
	maxExternalAttribute = 256
	minExternalRSABits   = 2048
)

// ExternalConfig is one trusted external OIDC issuer, as [NewExternal]
// takes it; it mirrors config.ExternalIssuer.
type ExternalConfig struct {
	// Issuer is the exact iss of the issuer's tokens: an https URL.
	Issuer string
	// Audience must be among a token's aud.
	Audience string
	// RolesClaim names the claim holding external roles or groups (default
	// "roles"). The claim may be a string (one role, or several separated
	// by spaces) or an array of strings. When no claim is literally named
	// RolesClaim and it contains dots, it is read as a path into nested
	// objects ("realm_access.roles").
	RolesClaim string
	// JWKSURL is the issuer's key set (https). Empty: read jwks_uri from
	// Issuer + "/.well-known/openid-configuration", whose issuer must
	// equal Issuer exactly (OpenID Connect Discovery §4.3).
	JWKSURL string
	// CAFile names PEM certificates trusted for the issuer's HTTPS in place
	// of the system roots (or of ExternalOptions.HTTPClient).
	CAFile string
	// RoleMap maps an external role to a Coffer role. External roles not in
	// the map are dropped: an external name never becomes a Coffer role
	// by itself.
	RoleMap map[string]string
	// SubjectPrefix starts every principal id from this issuer (default
	// "ext:HOST:" with the issuer's host and port). It must contain a ':',
	// which Coffer's client and user ids never do, and no issuer's prefix
	// may start another's, so that ids cannot collide.
	SubjectPrefix string
	// Algorithms lists the accepted JWS algorithms (default RS256, ES256,
	// EdDSA). Only RS*, PS*, ES* and EdDSA may be listed.
	Algorithms []string
	// AttributeClaims lists string claims copied into the principal's
	// attributes under their claim names (none by default).
	AttributeClaims []string
	// MFAACRValues lists acr values that mean a second factor was used, in
	// addition to an amr with "mfa", "otp" or "hwk".
	MFAACRValues []string
	// TokenTypes lists the accepted values of the JWS typ header, compared
	// without case and with or without "application/" (default: at+jwt,
	// RFC 9068 §2.1). A token with no typ is refused. Listing "JWT" also
	// accepts tokens that do not say they are access tokens, OpenID
	// Connect ID tokens among them.
	TokenTypes []string
	// AllowMissingJTI accepts tokens without a jti (refused by default:
	// RFC 9068 requires one, and revocation needs a handle). Such a
	// token's TokenID is the subject prefix and "sha256:" with the hex
	// SHA-256 of the whole token, so it can still be revoked.
	AllowMissingJTI bool
}

// DefaultExternalTokenTypes are the typ values accepted when an issuer
// lists none: the RFC 9068 access-token type.
func DefaultExternalTokenTypes() []string { return []string{"at+jwt"} }

// ExternalOptions tunes [NewExternal]. Zero values take the defaults.
type ExternalOptions struct {
	// HTTPClient fetches discovery documents and key sets (default: a
	// client with the system roots, TLS 1.2 or later). An issuer with a
	// CAFile gets its own client instead. Redirects are followed only to
	// https URLs, at most three.
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Leeway is the clock skew tolerated on exp, nbf and iat (default 30s).
	Leeway time.Duration
	// RefreshInterval is the age after which an issuer's key set is
	// refreshed in the background while the cached keys go on verifying
	// (default 15m).
	RefreshInterval time.Duration
	// MinRefetchInterval is the shortest time between two fetches of one
	// issuer's keys (default 10s). A token with an unknown kid triggers a
	// fetch only when the last one started at least this long ago, so
	// tokens with made-up key ids cannot make Coffer hammer the issuer.
	MinRefetchInterval time.Duration
	// FetchTimeout bounds one fetch (default 10s).
	FetchTimeout time.Duration
	// CacheSize bounds the verified-token cache (default 10000; negative
	// disables it). A token seen again costs a SHA-256 and a map lookup
	// until its exp (plus leeway); every change of an issuer's key set
	// empties the cache, so a withdrawn key stops verifying at once.
	CacheSize int
	// Logger receives key-set fetch results (default: discarded). Nothing
	// logged contains a token or a response body.
	Logger *slog.Logger
}

// External verifies JWTs from trusted external OpenID Connect issuers and
// turns them into principals of kind coffer.KindExternal. It is safe for
// concurrent use; a nil *External trusts no issuer.
//
// # Why not go-oidc's RemoteKeySet
//
// External keeps its own key cache over go-jose rather than using
// github.com/coreos/go-oidc/v3's RemoteKeySet, because that cache refetches
// the JWKS after every failed signature check (a forged token with a known
// kid, or any made-up kid, costs an outbound request: a cheap
// amplification at the issuer), has no rate limit, no size bound on the
// response and no periodic refresh, and puts the response body into its
// errors. Here a fetch is triggered only by an unknown kid or an old key
// set, at most once per MinRefetchInterval per issuer, concurrent
// requesters share one fetch, bodies are capped at 1 MiB, a failed fetch
// keeps the last good keys (so an issuer outage does not log everyone
// out), and a key is used only for an algorithm it fits (kty, curve, key
// size, its own alg and use).
type External struct {
	now         func() time.Time
	leeway      time.Duration
	refresh     time.Duration
	minRefetch  time.Duration
	timeout     time.Duration
	log         *slog.Logger
	issuers     map[string]*extIssuer // by exact iss; never mutated after NewExternal
	ctx         context.Context       // cancelled by Close; parent of every fetch
	cancel      context.CancelFunc
	allowedAlgs map[string]jose.SignatureAlgorithm

	cache *tokenCache

	mu     sync.Mutex // guards closed, wg.Add against Close, and gen
	closed bool
	gen    uint64 // bumped, and the cache emptied, by every key-set change
	wg     sync.WaitGroup
}

// extIssuer is one issuer's settings and key cache.
type extIssuer struct {
	cfg     ExternalConfig
	algs    []jose.SignatureAlgorithm
	prefix  string
	roleMap map[string]string
	mfaACR  []string
	types   []string // normalised typ values accepted
	client  *http.Client

	mu        sync.Mutex
	keys      map[string][]jose.JSONWebKey // by kid; replaced, never mutated
	jwksURL   string                       // configured or discovered
	fetchedAt time.Time                    // last successful fetch
	startedAt time.Time                    // last fetch started
	lastErr   error                        // of the last fetch that ended
	inflight  *extFetch
}

// extFetch is one fetch in progress; done closes when it ends.
type extFetch struct {
	done chan struct{}
	err  error
}

// externalAlgorithms are the algorithms an issuer may be configured with.
func externalAlgorithms() map[string]jose.SignatureAlgorithm {
	m := map[string]jose.SignatureAlgorithm{}
	for _, a := range []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	} {
		m[string(a)] = a
	}
	return m
}

// NewExternal checks cfgs and returns an External that trusts them. It
// then fetches every issuer's keys, waiting until they arrive or ctx is
// done; an issuer that cannot be reached is logged, not an error, and is
// tried again (rate-limited) when its tokens arrive, so that Coffer starts
// while an identity provider is down. The error names the bad setting,
// never a secret. Call Close when done.
func NewExternal(ctx context.Context, cfgs []ExternalConfig, opts ExternalOptions) (*External, error) {
	e := &External{
		now: opts.Now, leeway: opts.Leeway, refresh: opts.RefreshInterval,
		minRefetch: opts.MinRefetchInterval, timeout: opts.FetchTimeout, log: opts.Logger,
		issuers: map[string]*extIssuer{}, allowedAlgs: externalAlgorithms(),
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.leeway <= 0 {
		e.leeway = DefaultTokenLeeway
	}
	if e.refresh <= 0 {
		e.refresh = DefaultExternalRefreshInterval
	}
	if e.minRefetch <= 0 {
		e.minRefetch = DefaultExternalMinRefetchInterval
	}
	if e.timeout <= 0 {
		e.timeout = DefaultExternalFetchTimeout
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultTokenCacheSize
	}
	e.cache = newTokenCache(opts.CacheSize)
	var prefixes []string
	for i, c := range cfgs {
		is, err := e.newIssuer(c, opts.HTTPClient)
		if err != nil {
			return nil, fmt.Errorf("auth: external issuer %d: %w", i, err)
		}
		if _, dup := e.issuers[is.cfg.Issuer]; dup {
			return nil, fmt.Errorf("auth: external issuer %d: %q listed twice", i, is.cfg.Issuer)
		}
		for _, p := range prefixes {
			if strings.HasPrefix(p, is.prefix) || strings.HasPrefix(is.prefix, p) {
				return nil, fmt.Errorf("auth: external issuer %d: subject prefix %q collides with %q; set distinct prefixes", i, is.prefix, p)
			}
		}
		prefixes = append(prefixes, is.prefix)
		e.issuers[is.cfg.Issuer] = is
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())

	var fetches []*extFetch
	now := e.now()
	for _, is := range e.issuers {
		is.mu.Lock()
		fetches = append(fetches, e.startFetch(is, now))
		is.mu.Unlock()
	}
	for _, f := range fetches {
		select {
		case <-f.done:
		case <-ctx.Done():
			return e, nil
		}
	}
	return e, nil
}

func (e *External) newIssuer(c ExternalConfig, base *http.Client) (*extIssuer, error) {
	if err := checkExternalURL(c.Issuer); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if strings.TrimSpace(c.Audience) == "" {
		return nil, errors.New("audience must be set")
	}
	if c.JWKSURL != "" {
		if err := checkExternalURL(c.JWKSURL); err != nil {
			return nil, fmt.Errorf("jwks url: %w", err)
		}
	}
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultExternalRolesClaim
	}
	is := &extIssuer{
		cfg: c, prefix: c.SubjectPrefix, jwksURL: c.JWKSURL,
		roleMap: map[string]string{}, mfaACR: slices.Clone(c.MFAACRValues),
	}
	if is.prefix == "" {
		u, _ := url.Parse(c.Issuer)
		is.prefix = "ext:" + u.Host + ":"
	}
	if !strings.Contains(is.prefix, ":") {
		return nil, errors.New("subject prefix must contain a ':'")
	}
	algs := c.Algorithms
	if len(algs) == 0 {
		algs = []string{string(jose.RS256), string(jose.ES256), string(jose.EdDSA)}
	}
	for _, a := range algs {
		alg, ok := e.allowedAlgs[a]
		if !ok {
			return nil, fmt.Errorf("algorithm %q not allowed (asymmetric RS*, PS*, ES* and EdDSA only)", a)
		}
		if !slices.Contains(is.algs, alg) {
			is.algs = append(is.algs, alg)
		}
	}
	for from, to := range c.RoleMap {
		if from == "" || to == "" {
			return nil, errors.New("role map: empty role name")
		}
		is.roleMap[from] = to
	}
	is.cfg.RoleMap = nil // is.roleMap is the copy in use
	types := c.TokenTypes
	if len(types) == 0 {
		types = DefaultExternalTokenTypes()
	}
	for _, typ := range types {
		if strings.TrimSpace(typ) == "" {
			return nil, errors.New("token types: empty type")
		}
		is.types = append(is.types, normTyp(typ))
	}
	is.cfg.AttributeClaims = slices.Clone(c.AttributeClaims)

	client, err := externalClient(base, c.CAFile)
	if err != nil {
		return nil, err
	}
	is.client = client
	return is, nil
}

// externalClient returns the HTTP client for one issuer: its own with
// caFile's roots when set, else a copy of base, else a default one; each
// follows only https redirects.
func externalClient(base *http.Client, caFile string) (*http.Client, error) {
	var c http.Client
	switch {
	case caFile != "":
		pem, err := os.ReadFile(caFile) // #nosec G304 -- auth.external[].ca_file, the operator's configuration
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca file: no PEM certificate in it")
		}
		c.Transport = externalTransport(pool)
	case base != nil:
		c = *base
	default:
		c.Transport = externalTransport(nil)
	}
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxExternalRedirects {
			return errors.New("too many redirects")
		}
		if req.URL.Scheme != "https" {
			return errors.New("redirect to a non-https URL")
		}
		return nil
	}
	return &c, nil
}

func externalTransport(roots *x509.CertPool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return t
}

// checkExternalURL checks an absolute https URL with a host.
func checkExternalURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil {
		return errors.New("must be an https:// URL with a host and no credentials")
	}
	return nil
}

// Close stops fetches in progress and waits for them to end. Verify keeps
// working with the keys already fetched; no new fetch succeeds.
func (e *External) Close() {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.closed = true
	e.cancel()
	e.mu.Unlock()
	e.wg.Wait()
}

// Issuer peeks, without verifying anything, at the iss claim of token, so
// that a caller can route it: ok reports whether iss is one of the
// configured issuers. It returns "", false for anything that is not a
// compact JWS with a string iss, and when no issuer is configured. Never
// trust iss before Verify.
// Leeway is the clock skew Verify tolerates past a token's exp (the
// default for a nil External).
func (e *External) Leeway() time.Duration {
	if e == nil || e.leeway <= 0 {
		return DefaultTokenLeeway
	}
	return e.leeway
}

func (e *External) Issuer(token string) (iss string, ok bool) {
	if e == nil || len(e.issuers) == 0 {
		// Nothing to route to: skip decoding a payload on every request.
		return "", false
	}
	iss, err := peekIssuer(token)
	if err != nil {
		return "", false
	}
	_, ok = e.issuers[iss]
	return iss, ok
}

// peekIssuer returns the unverified iss of a compact JWS.
func peekIssuer(token string) (string, error) {
	if len(token) == 0 || len(token) > MaxExternalTokenLen {
		return "", errors.New("empty or too long")
	}
	_, rest, ok := strings.Cut(token, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return "", errors.New("not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", errors.New("payload is not base64url")
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(b, &claims); err != nil {
		return "", errors.New("payload is not a JSON object")
	}
	var iss string
	if err := json.Unmarshal(claims["iss"], &iss); err != nil || iss == "" {
		return "", errors.New("no iss")
	}
	return iss, nil
}

// extInvalid is invalid with the (configured, never token-supplied) issuer.
func extInvalid(is *extIssuer, reason string) error {
	return fmt.Errorf("%w: external issuer %s: %s", ErrInvalidToken, is.cfg.Issuer, reason)
}

// Verify checks token against the configured issuer named by its iss and
// returns its principal: a compact JWS with exactly one signature, alg in
// the issuer's list, a kid naming a key of the issuer's JWKS that fits the
// alg, a typ header among the issuer's token types (at+jwt by default, so
// that an ID token is not taken for an access token), a valid signature,
// iss equal to the issuer, the audience among aud, exp present and not
// passed, nbf and iat (when present) not in the future, all within the
// leeway, a printable sub of at most 255 bytes, and a jti unless the
// issuer allows tokens without one.
//
// The principal has ID = subject prefix + sub, Kind coffer.KindExternal,
// the mapped roles (unmapped ones dropped), the configured attribute
// claims that are short printable strings, MFA when amr has "mfa", "otp"
// or "hwk" or acr is one of the configured values, TokenID = subject
// prefix + jti (without a jti: subject prefix + "sha256:" + the token's
// hex SHA-256), TokenExpiry = exp and AuthTime = iat.
//
// Every refusal, including a token from an issuer not configured, wraps
// ErrInvalidToken; its text names the reason and never the token. ctx
// bounds the wait for the issuer's keys when the kid is not cached.
func (e *External) Verify(ctx context.Context, token string) (*coffer.Principal, error) {
	if len(token) == 0 || len(token) > MaxExternalTokenLen {
		return nil, invalid("empty or too long")
	}
	if e == nil {
		return nil, invalid("issuer not trusted")
	}
	sum := sha256.Sum256([]byte(token))
	if p, ok := e.cache.get(sum, e.now()); ok {
		return clonePrincipal(p), nil
	}
	e.mu.Lock()
	gen := e.gen // read before the keys: see startFetch
	e.mu.Unlock()
	for i := 0; i < len(token); i++ {
		if !isCompactByte(token[i]) {
			return nil, invalid("not a compact serialisation")
		}
	}
	iss, err := peekIssuer(token)
	if err != nil {
		return nil, invalid("malformed JWT")
	}
	is := e.issuers[iss]
	if is == nil {
		return nil, invalid("issuer not trusted")
	}

	jws, err := jose.ParseSignedCompact(token, is.algs)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, extInvalid(is, "algorithm not allowed")
		}
		return nil, extInvalid(is, "malformed JWS")
	}
	if len(jws.Signatures) != 1 {
		return nil, extInvalid(is, "not exactly one signature")
	}
	h := jws.Signatures[0].Protected
	alg := jose.SignatureAlgorithm(h.Algorithm)
	switch {
	case !slices.Contains(is.algs, alg) || jws.Signatures[0].Header.Algorithm != h.Algorithm:
		return nil, extInvalid(is, "algorithm not allowed")
	case h.KeyID == "":
		return nil, extInvalid(is, "no kid")
	case h.JSONWebKey != nil:
		return nil, extInvalid(is, "embedded jwk")
	}
	keys, err := e.keysFor(ctx, is, h.KeyID)
	if err != nil {
		return nil, err
	}
	var payload []byte
	fits := false
	for _, k := range keys {
		if !keyFits(k, alg) {
			continue
		}
		fits = true
		if p, err := jws.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	switch {
	case !fits:
		return nil, extInvalid(is, "key does not fit the algorithm")
	case payload == nil:
		return nil, extInvalid(is, "bad signature")
	}
	// An ID token or any other JWT of the issuer is not an access token.
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if typ == "" || !slices.Contains(is.types, normTyp(typ)) {
		return nil, extInvalid(is, "typ is not an accepted access-token type")
	}
	p, err := e.principal(is, payload, sum)
	if err != nil {
		return nil, err
	}
	e.cache.put(sum, p, p.TokenExpiry.Add(e.leeway), gen)
	return clonePrincipal(p), nil
}

// keysFor returns the issuer's keys with id kid, fetching the key set when
// kid is unknown (waiting for it, within ctx) or the set is old (in the
// background, answering from the cache meanwhile). Fetches start at most
// once per minRefetch.
func (e *External) keysFor(ctx context.Context, is *extIssuer, kid string) ([]jose.JSONWebKey, error) {
	now := e.now()
	is.mu.Lock()
	keys, have := is.keys[kid]
	f := is.inflight
	if f == nil && (!have || now.Sub(is.fetchedAt) >= e.refresh) &&
		(is.startedAt.IsZero() || now.Sub(is.startedAt) >= e.minRefetch) {
		f = e.startFetch(is, now)
	}
	is.mu.Unlock()
	if have {
		return keys, nil
	}
	if f == nil {
		return nil, unknownKid(is)
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: external issuer %s: waiting for keys: %w", ErrInvalidToken, is.cfg.Issuer, ctx.Err())
	}
	is.mu.Lock()
	keys, have = is.keys[kid]
	is.mu.Unlock()
	if !have {
		return nil, unknownKid(is)
	}
	return keys, nil
}

// unknownKid is the refusal for a kid not among is's keys, saying whether
// the last fetch failed (so the logs tell an outage from a bad token).
func unknownKid(is *extIssuer) error {
	is.mu.Lock()
	failed := is.lastErr != nil
	is.mu.Unlock()
	if failed {
		return extInvalid(is, "unknown kid (the last key fetch failed)")
	}
	return extInvalid(is, "unknown kid")
}

// errExternalClosed fails fetches asked for after Close.
var errExternalClosed = errors.New("closed")

// startFetch starts fetching is's keys; is.mu must be held. After Close
// it returns a fetch that has already failed.
func (e *External) startFetch(is *extIssuer, now time.Time) *extFetch {
	f := &extFetch{done: make(chan struct{})}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		f.err = errExternalClosed
		close(f.done)
		return f
	}
	is.inflight, is.startedAt = f, now
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
		defer cancel()
		is.mu.Lock()
		jwksURL := is.jwksURL
		is.mu.Unlock()
		keys, jwksURL, err := is.fetch(ctx, jwksURL)
		is.mu.Lock()
		if err == nil {
			is.keys, is.jwksURL, is.fetchedAt = keys, jwksURL, e.now()
		}
		is.inflight, is.lastErr = nil, err
		is.mu.Unlock()
		if err == nil {
			// After the keys are replaced: a Verify that read the old gen
			// may have used the old keys, and its cache put is refused.
			e.mu.Lock()
			e.gen++
			e.cache.clear(e.gen)
			e.mu.Unlock()
		}
		f.err = err
		close(f.done)
		if err != nil {
			e.log.Warn("external issuer: key fetch failed; keeping the keys already fetched",
				"issuer", is.cfg.Issuer, "error", err.Error())
		} else {
			e.log.Info("external issuer: keys fetched", "issuer", is.cfg.Issuer, "keys", countKeys(keys))
		}
	}()
	return f
}

func countKeys(m map[string][]jose.JSONWebKey) int {
	n := 0
	for _, ks := range m {
		n += len(ks)
	}
	return n
}

// fetch discovers the JWKS URL when jwksURL is empty, then fetches and
// parses the key set. A set without one usable key is an error, so a
// broken response never replaces good keys.
func (is *extIssuer) fetch(ctx context.Context, jwksURL string) (map[string][]jose.JSONWebKey, string, error) {
	if jwksURL == "" {
		u, err := is.discover(ctx)
		if err != nil {
			return nil, "", err
		}
		jwksURL = u
	}
	body, err := is.get(ctx, jwksURL)
	if err != nil {
		return nil, "", fmt.Errorf("jwks: %w", err)
	}
	keys, err := parseExternalJWKS(body, is.algs)
	if err != nil {
		return nil, "", fmt.Errorf("jwks: %w", err)
	}
	return keys, jwksURL, nil
}

// discover reads jwks_uri from the issuer's OpenID configuration.
func (is *extIssuer) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(is.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	body, err := is.get(ctx, u)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", errors.New("discovery: not a JSON document")
	}
	if doc.Issuer != is.cfg.Issuer {
		return "", errors.New("discovery: the document's issuer is not the configured issuer")
	}
	if err := checkExternalURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery: jwks_uri %w", err)
	}
	return doc.JWKSURI, nil
}

// get fetches u and returns a 200 response's body, at most
// maxExternalDocBytes. Errors never hold the body.
func (is *extIssuer) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, errors.New("bad URL")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := is.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxExternalDocBytes))
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxExternalDocBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(b) > maxExternalDocBytes {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", u, maxExternalDocBytes)
	}
	return b, nil
}

// parseExternalJWKS parses a JWK Set (RFC 7517) and keeps, by kid, the
// public half of each signature key that fits one of algs. Keys it cannot
// use are skipped, as RFC 7517 §5 asks: unknown kty, no kid, use other
// than sig, symmetric, RSA under 2048 bits, or an alg not allowed.
func parseExternalJWKS(body []byte, algs []jose.SignatureAlgorithm) (map[string][]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("not a JWK set")
	}
	if len(set.Keys) > maxExternalJWKSKeys {
		return nil, fmt.Errorf("more than %d keys", maxExternalJWKSKeys)
	}
	out := map[string][]jose.JSONWebKey{}
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(raw, &k); err != nil || !k.Valid() {
			continue
		}
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub := k.Public() // a private key published by mistake: keep only its public half
		if !pub.Valid() || !pub.IsPublic() {
			continue
		}
		pub.Certificates = nil // verification uses the key itself, never a chain
		if !slices.ContainsFunc(algs, func(a jose.SignatureAlgorithm) bool { return keyFits(pub, a) }) {
			continue
		}
		out[pub.KeyID] = append(out[pub.KeyID], pub)
	}
	if len(out) == 0 {
		return nil, errors.New("no usable signature key")
	}
	return out, nil
}

// keyFits reports whether k may verify a signature made with alg: its
// type, curve and size match alg, and its own alg, if any, is alg.
func keyFits(k jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return pub.N.BitLen() >= minExternalRSABits
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return pub.Curve == elliptic.P256()
		case jose.ES384:
			return pub.Curve == elliptic.P384()
		case jose.ES512:
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// principal checks the verified claims of payload and builds the principal.
// normTyp is a typ header value compared as RFC 7515 §4.1.9 says: without
// case, "application/" optional.
func normTyp(typ string) string {
	t := strings.ToLower(strings.TrimSpace(typ))
	return strings.TrimPrefix(t, "application/")
}

func (e *External) principal(is *extIssuer, payload []byte, sum [sha256.Size]byte) (*coffer.Principal, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, extInvalid(is, "malformed claims")
	}
	var (
		iss, sub, jti, acr string
		aud                jwt.Audience
		exp, nbf, iat      *jwt.NumericDate
		amr                []string
	)
	for name, dst := range map[string]any{
		"iss": &iss, "sub": &sub, "jti": &jti, "acr": &acr, "aud": &aud,
		"exp": &exp, "nbf": &nbf, "iat": &iat, "amr": &amr,
	} {
		if v, ok := raw[name]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return nil, extInvalid(is, "malformed "+name)
			}
		}
	}
	now, lw := e.now(), e.leeway
	switch {
	case iss != is.cfg.Issuer:
		return nil, extInvalid(is, "wrong iss")
	case !aud.Contains(is.cfg.Audience):
		return nil, extInvalid(is, "wrong aud")
	case exp == nil:
		return nil, extInvalid(is, "exp missing")
	case !now.Before(exp.Time().Add(lw)):
		return nil, extInvalid(is, "expired")
	case nbf != nil && now.Add(lw).Before(nbf.Time()):
		return nil, extInvalid(is, "not yet valid")
	case iat != nil && now.Add(lw).Before(iat.Time()):
		return nil, extInvalid(is, "issued in the future")
	case !safeClaimString(sub, maxExternalSubject):
		return nil, extInvalid(is, "sub missing, too long or not printable")
	case jti != "" && !safeClaimString(jti, maxExternalSubject):
		return nil, extInvalid(is, "jti too long or not printable")
	case jti == "" && !is.cfg.AllowMissingJTI:
		return nil, extInvalid(is, "jti missing")
	}

	p := &coffer.Principal{
		ID: is.prefix + sub, Kind: coffer.KindExternal,
		Roles:       is.mapRoles(claimAt(raw, is.cfg.RolesClaim)),
		MFA:         slices.ContainsFunc(amr, func(m string) bool { return m == "mfa" || m == "otp" || m == "hwk" }) || (acr != "" && slices.Contains(is.mfaACR, acr)),
		TokenExpiry: exp.Time(),
	}
	if jti != "" {
		p.TokenID = is.prefix + jti
	} else {
		p.TokenID = is.prefix + "sha256:" + hex.EncodeToString(sum[:])
	}
	if iat != nil {
		p.AuthTime = iat.Time()
	}
	for _, name := range is.cfg.AttributeClaims {
		var v string
		if json.Unmarshal(raw[name], &v) == nil && safeClaimString(v, maxExternalAttribute) {
			if p.Attributes == nil {
				p.Attributes = map[string]string{}
			}
			p.Attributes[name] = v
		}
	}
	return p, nil
}

// claimAt returns the claim name, or, when there is none and name has
// dots, the value at that path through nested objects.
func claimAt(raw map[string]json.RawMessage, name string) json.RawMessage {
	if v, ok := raw[name]; ok || !strings.Contains(name, ".") {
		return v
	}
	parts := strings.Split(name, ".")
	cur := raw
	for i, part := range parts {
		v, ok := cur[part]
		if !ok {
			return nil
		}
		if i == len(parts)-1 {
			return v
		}
		cur = nil
		if json.Unmarshal(v, &cur) != nil {
			return nil
		}
	}
	return nil
}

// mapRoles maps the external roles in v (a string of space-separated
// roles, or an array whose string elements are roles) through the role
// map, in order, without duplicates. Unmapped roles and anything else in
// v are dropped.
func (is *extIssuer) mapRoles(v json.RawMessage) []string {
	var names []string
	var s string
	var list []any
	switch {
	case len(v) == 0:
	case json.Unmarshal(v, &s) == nil:
		names = strings.Fields(s)
	case json.Unmarshal(v, &list) == nil:
		for _, x := range list {
			if s, ok := x.(string); ok {
				names = append(names, s)
			}
		}
	}
	roles := []string{}
	for _, n := range names {
		if r, ok := is.roleMap[n]; ok && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	return roles
}

// safeClaimString reports whether s is non-empty, at most max bytes of
// valid UTF-8, without control characters: safe for ids, logs and policy.
func safeClaimString(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, unicode.IsControl)
}
