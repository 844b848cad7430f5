package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Token defaults.
const (
	DefaultTokenTTL       = 15 * time.Minute
	DefaultTokenLeeway    = 30 * time.Second
	DefaultTokenCacheSize = 10000
	// DefaultLoginClientID is the client_id claim of tokens issued to users,
	// who sign in through Coffer itself rather than through a client.
	DefaultLoginClientID = "coffer"
	// TokenType is the JWS "typ" of access tokens (RFC 9068 §2.1).
	TokenType = "at+jwt"
	// MaxTokenLen bounds the tokens Verify will parse.
	MaxTokenLen = 8 << 10
)

// ErrInvalidToken is the one error Verify returns, wrapped, for every token
// it refuses, whatever the reason. The wrapping error names the reason for
// logs; it never contains the token. Do not show the reason to the caller.
var ErrInvalidToken = errors.New("auth: invalid access token")

// ErrNoSigningKey is returned by Issue when no usable active signing key is
// set (none yet, malformed, or past its NotAfter).
var ErrNoSigningKey = errors.New("auth: no usable signing key")

// TokenConfig configures [NewTokens]. Zero values take the defaults.
type TokenConfig struct {
	// Issuer is the "iss" of issued tokens; Verify accepts it and
	// AcceptIssuers, no other.
	Issuer string
	// AcceptIssuers are other iss values of this deployment's own tokens
	// that Verify accepts (a node whose auth.issuer differs from the
	// deployment's accepts both). Tokens must still be signed by one of
	// the keys set with SetKeys.
	AcceptIssuers []string
	// Audience is the "aud" of issued tokens; Verify requires it among a
	// token's audiences.
	Audience string
	// TTL is the lifetime of issued tokens (default 15m).
	TTL time.Duration
	// Leeway is the clock skew tolerated on exp, nbf and iat (default 30s).
	Leeway time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand makes token ids (default crypto/rand.Reader).
	Rand io.Reader
	// CacheSize bounds the verified-token cache (default 10000; negative
	// disables the cache).
	CacheSize int
	// LoginClientID is the client_id claim of user tokens (default "coffer").
	LoginClientID string
}

// Issued is a freshly signed access token.
type Issued struct {
	// Token is the compact JWS. It is a bearer credential: never log it.
	Token     string
	ExpiresAt time.Time
	// JTI is the token's id, the handle for revocation.
	JTI   string
	Scope string
}

// Tokens issues and verifies Coffer's access tokens: JWTs in the RFC 9068
// profile, signed with Ed25519 (JWS alg EdDSA), typ "at+jwt", with a kid.
// It is safe for concurrent use.
type Tokens struct {
	cfg   TokenConfig
	cache *tokenCache

	mu     sync.RWMutex
	gen    uint64               // bumped by every SetKeys
	signer jose.Signer          // nil until an active key is set
	active verifyKey            // the active key's public half
	keys   map[string]verifyKey // every key that verifies, by kid; replaced, never mutated
	jwks   []jose.JSONWebKey    // published keys: active first, then by kid
}

type verifyKey struct {
	id       string
	pub      ed25519.PublicKey
	notAfter time.Time
}

func (k verifyKey) live(t time.Time) bool {
	return k.notAfter.IsZero() || t.Before(k.notAfter)
}

// NewTokens returns a Tokens for c with no keys: call SetKeys before Issue.
func NewTokens(c TokenConfig) *Tokens {
	if c.TTL <= 0 {
		c.TTL = DefaultTokenTTL
	}
	if c.Leeway <= 0 {
		c.Leeway = DefaultTokenLeeway
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultTokenCacheSize
	}
	if c.LoginClientID == "" {
		c.LoginClientID = DefaultLoginClientID
	}
	return &Tokens{cfg: c, cache: newTokenCache(c.CacheSize), keys: map[string]verifyKey{}}
}

// SetKeys replaces the keys: active signs new tokens and verifies; each of
// verifyOnly only verifies (a key rotated out keeps verifying until its
// tokens have expired, then the caller drops it). Every key set is
// published by JWKS until its NotAfter. A key without an id, with a
// malformed private key, or whose id is already taken by another key is
// ignored; if active is ignored, Issue fails with ErrNoSigningKey. SetKeys
// empties the verified-token cache, so a dropped key stops verifying at
// once. Safe to call while other goroutines Issue and Verify.
func (t *Tokens) SetKeys(active SigningKey, verifyOnly ...SigningKey) {
	keys := make(map[string]verifyKey, 1+len(verifyOnly))
	var jwks []jose.JSONWebKey
	add := func(k SigningKey) (verifyKey, bool) {
		if !k.valid() {
			return verifyKey{}, false
		}
		if _, taken := keys[k.ID]; taken {
			return verifyKey{}, false
		}
		vk := verifyKey{id: k.ID, pub: k.Private.Public().(ed25519.PublicKey), notAfter: k.NotAfter}
		keys[k.ID] = vk
		jwks = append(jwks, jose.JSONWebKey{Key: vk.pub, KeyID: k.ID, Algorithm: string(jose.EdDSA), Use: "sig"})
		return vk, true
	}
	var signer jose.Signer
	act, ok := add(active)
	if ok {
		opts := (&jose.SignerOptions{}).WithType(TokenType).WithHeader("kid", active.ID)
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: active.Private}, opts)
		if err == nil {
			signer = s
		}
	}
	for _, k := range verifyOnly {
		add(k)
	}
	if len(jwks) > 1 {
		rest := jwks[1:]
		if !ok {
			rest = jwks
		}
		sort.Slice(rest, func(i, j int) bool { return rest[i].KeyID < rest[j].KeyID })
	}

	t.mu.Lock()
	t.gen++
	gen := t.gen
	t.signer, t.active, t.keys, t.jwks = signer, act, keys, jwks
	t.cache.clear(gen) // under t.mu, so generations reach the cache in order
	t.mu.Unlock()
}

// accessClaims is the JWT claims set of an access token.
type accessClaims struct {
	Issuer    string            `json:"iss"`
	Subject   string            `json:"sub"`
	Audience  jwt.Audience      `json:"aud"`
	ClientID  string            `json:"client_id"`
	IssuedAt  *jwt.NumericDate  `json:"iat"`
	NotBefore *jwt.NumericDate  `json:"nbf"`
	Expiry    *jwt.NumericDate  `json:"exp"`
	ID        string            `json:"jti"`
	Scope     string            `json:"scope,omitempty"`
	Roles     []string          `json:"roles"`
	Kind      string            `json:"coffer_kind"`
	Attrs     map[string]string `json:"coffer_attrs,omitempty"`
	AMR       []string          `json:"amr,omitempty"`
	// Generation is the principal's generation at issue (see
	// coffer.Principal.Generation). A token without it was issued by a
	// Coffer from before generations (a node not yet upgraded, in a
	// rolling upgrade): it counts as generation 1, where every principal
	// started, so it stays valid only while its principal has not changed
	// since.
	Generation *int64 `json:"coffer_gen,omitempty"`
}

// legacyGeneration is the generation of a token without coffer_gen: the
// one every principal started at when generations were introduced.
const legacyGeneration = 1

// TTL is the lifetime of the tokens Issue makes.
func (t *Tokens) TTL() time.Duration { return t.cfg.TTL }

// Leeway is the clock skew Verify tolerates: a token verifies until its
// exp plus Leeway.
func (t *Tokens) Leeway() time.Duration { return t.cfg.Leeway }

// Issue signs an access token for p with the active key. scope is the
// space-separated RFC 6749 scope; amr lists the authentication methods
// (RFC 8176: "pwd", "otp", "mfa"…), and a token whose amr has "otp" or
// "mfa" verifies with Principal.MFA set. p.Kind must be coffer.KindClient
// or coffer.KindUser. The token carries p.Generation (claim coffer_gen),
// which Verify returns with the kid of the signing key, for the caller to
// check against the store.
func (t *Tokens) Issue(p coffer.Principal, scope string, amr []string) (Issued, error) {
	if p.ID == "" {
		return Issued{}, errors.New("auth: issue: principal has no id")
	}
	clientID := t.cfg.LoginClientID
	switch p.Kind {
	case coffer.KindClient:
		clientID = p.ID
	case coffer.KindUser:
	default:
		return Issued{}, errors.New("auth: issue: principal kind must be client or user")
	}
	if p.Generation < 1 {
		return Issued{}, errors.New("auth: issue: principal has no generation")
	}
	now := t.cfg.Now().UTC().Truncate(time.Second)

	t.mu.RLock()
	signer, active := t.signer, t.active
	t.mu.RUnlock()
	if signer == nil || !active.live(now) {
		return Issued{}, ErrNoSigningKey
	}

	jti, err := randomTokenID(t.cfg.Rand)
	if err != nil {
		return Issued{}, fmt.Errorf("auth: issue: token id: %w", err)
	}
	exp := now.Add(t.cfg.TTL)
	roles := p.Roles
	if roles == nil {
		roles = []string{}
	}
	c := accessClaims{
		Issuer: t.cfg.Issuer, Subject: p.ID, Audience: jwt.Audience{t.cfg.Audience}, ClientID: clientID,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
		ID: jti, Scope: scope, Roles: roles, Kind: p.Kind, AMR: amr, Generation: &p.Generation,
	}
	if len(p.Attributes) > 0 {
		c.Attrs = p.Attributes
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return Issued{}, fmt.Errorf("auth: issue: claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return Issued{}, fmt.Errorf("auth: issue: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return Issued{}, fmt.Errorf("auth: issue: serialise: %w", err)
	}
	return Issued{Token: tok, ExpiresAt: exp, JTI: jti, Scope: scope}, nil
}

func randomTokenID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, reason) }

// Verify checks an access token and returns its principal. It accepts only
// the exact compact JWS that Issue makes: alg EdDSA, typ at+jwt, a kid of
// a key set with SetKeys and still live, a valid signature, the configured
// iss, aud among the audiences, exp and nbf and iat within the leeway, and
// jti, sub and a known coffer_kind present, and coffer_gen 1 or more when
// present (absent: generation 1, see accessClaims). Every refusal is an error
// wrapping ErrInvalidToken whose text names the reason and never the token.
//
// Verified tokens are cached by their SHA-256 until they expire (or their
// key does); every hit is checked against the clock again.
func (t *Tokens) Verify(token string) (*coffer.Principal, error) {
	if len(token) == 0 || len(token) > MaxTokenLen {
		return nil, invalid("empty or too long")
	}
	now := t.cfg.Now()
	sum := sha256.Sum256([]byte(token))
	if p, ok := t.cache.get(sum, now); ok {
		return clonePrincipal(p), nil
	}
	for i := 0; i < len(token); i++ {
		if !isCompactByte(token[i]) {
			return nil, invalid("not a compact serialisation")
		}
	}

	t.mu.RLock()
	gen, keys := t.gen, t.keys
	t.mu.RUnlock()

	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, invalid("algorithm not allowed")
		}
		return nil, invalid("malformed JWS")
	}
	if len(jws.Signatures) != 1 {
		return nil, invalid("not exactly one signature")
	}
	sig := jws.Signatures[0]
	h := sig.Protected
	switch {
	case sig.Header.Algorithm != string(jose.EdDSA) || h.Algorithm != string(jose.EdDSA):
		return nil, invalid("algorithm not allowed")
	case h.KeyID == "":
		return nil, invalid("no kid")
	case h.JSONWebKey != nil || h.Nonce != "":
		return nil, invalid("unexpected header parameter")
	case len(h.ExtraHeaders) != 1:
		return nil, invalid("unexpected or missing header parameter")
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !isAccessTokenType(typ) {
		return nil, invalid("typ is not at+jwt")
	}
	key, ok := keys[h.KeyID]
	if !ok {
		return nil, invalid("unknown kid")
	}
	if !key.live(now) {
		return nil, invalid("key past its NotAfter")
	}
	payload, err := jws.Verify(key.pub)
	if err != nil {
		return nil, invalid("bad signature")
	}
	// Our own key signed it; these guard against a token that is not in the
	// exact form Issue makes (malleable base64, header parameters we never
	// write such as x5c).
	if canon, err := jws.CompactSerialize(); err != nil || canon != token {
		return nil, invalid("not in canonical form")
	}
	if _, err := h.Certificates(x509.VerifyOptions{}); !errors.Is(err, jose.ErrMissingX5cHeader) {
		return nil, invalid("unexpected x5c header")
	}

	var c accessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, invalid("malformed claims")
	}
	exp, err := t.checkClaims(&c, now)
	if err != nil {
		return nil, err
	}
	p := &coffer.Principal{
		ID: c.Subject, Kind: c.Kind, Roles: c.Roles, Attributes: c.Attrs,
		MFA:     slices.Contains(c.AMR, "otp") || slices.Contains(c.AMR, "mfa"),
		TokenID: c.ID, TokenExpiry: exp, AuthTime: c.IssuedAt.Time(),
		Generation: legacyGeneration, TokenKeyID: h.KeyID,
	}
	if c.Generation != nil {
		p.Generation = *c.Generation
	}
	if p.Roles == nil {
		p.Roles = []string{}
	}
	until := exp.Add(t.cfg.Leeway)
	if !key.notAfter.IsZero() && key.notAfter.Before(until) {
		until = key.notAfter
	}
	t.cache.put(sum, p, until, gen)
	return clonePrincipal(p), nil
}

// checkClaims checks the registered and Coffer claims of c at now and
// returns the expiry.
func (t *Tokens) checkClaims(c *accessClaims, now time.Time) (time.Time, error) {
	lw := t.cfg.Leeway
	switch {
	case c.Issuer != t.cfg.Issuer && !slices.Contains(t.cfg.AcceptIssuers, c.Issuer):
		return time.Time{}, invalid("wrong iss")
	case !c.Audience.Contains(t.cfg.Audience):
		return time.Time{}, invalid("wrong aud")
	case c.Expiry == nil || c.NotBefore == nil || c.IssuedAt == nil:
		return time.Time{}, invalid("exp, nbf or iat missing")
	case c.ID == "":
		return time.Time{}, invalid("jti missing")
	case c.Subject == "":
		return time.Time{}, invalid("sub missing")
	case c.Generation != nil && *c.Generation < 1:
		return time.Time{}, invalid("coffer_gen not a generation")
	}
	exp, nbf, iat := c.Expiry.Time(), c.NotBefore.Time(), c.IssuedAt.Time()
	switch {
	case !now.Before(exp.Add(lw)):
		return time.Time{}, invalid("expired")
	case now.Add(lw).Before(nbf):
		return time.Time{}, invalid("not yet valid")
	case now.Add(lw).Before(iat):
		return time.Time{}, invalid("issued in the future")
	case !exp.After(iat):
		return time.Time{}, invalid("exp not after iat")
	}
	switch c.Kind {
	case coffer.KindClient:
		if c.ClientID != c.Subject {
			return time.Time{}, invalid("client_id does not match sub")
		}
	case coffer.KindUser:
	default:
		return time.Time{}, invalid("unknown coffer_kind")
	}
	return exp, nil
}

// isAccessTokenType reports whether typ names an RFC 9068 access token:
// "at+jwt" or "application/at+jwt", case-insensitively (RFC 7515 §4.1.9).
func isAccessTokenType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == TokenType || typ == "application/"+TokenType
}

// isCompactByte reports whether b may appear in a compact JWS: base64url
// characters and the dots between the parts.
func isCompactByte(b byte) bool {
	return 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.'
}

func clonePrincipal(p *coffer.Principal) *coffer.Principal {
	c := *p
	c.Roles = slices.Clone(p.Roles)
	c.Attributes = maps.Clone(p.Attributes)
	return &c
}

// JWKS returns the JSON Web Key Set (RFC 7517) of every key that verifies
// and has not passed its NotAfter: the active key first, then the others by
// kid. Each key has kty OKP, crv Ed25519, alg EdDSA, use sig and its kid.
func (t *Tokens) JWKS() ([]byte, error) {
	now := t.cfg.Now()
	t.mu.RLock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(t.jwks))}
	for _, k := range t.jwks {
		if t.keys[k.KeyID].live(now) {
			set.Keys = append(set.Keys, k)
		}
	}
	t.mu.RUnlock()
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("auth: jwks: %w", err)
	}
	return b, nil
}
