package identity

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store"
)

// Store is what identity keeps in the database.
type Store interface {
	ClientStore
	SigningKeyStore
	RevocationStore
	LockoutStore
	UserStore
}

// ClientStore keeps the service clients (CreateClient … DeleteClient).
type ClientStore interface {
	CreateClient(ctx context.Context, c coffer.Client) error
	Client(ctx context.Context, id string) (coffer.Client, error)
	Clients(ctx context.Context) ([]coffer.Client, error)
	UpdateClientSecret(ctx context.Context, id, secretHash string) error
	// UpdateClient replaces name, roles, attributes and the disabled flag
	// while roles and attributes are still wasRoles and wasAttrs
	// (ECONFLICT otherwise), and raises its generation (its tokens end).
	UpdateClient(ctx context.Context, c coffer.Client, wasRoles []string, wasAttrs map[string]string) error
	DeleteClient(ctx context.Context, id string) error
}

// SigningKeyStore keeps the access token signing keys, sealed.
type SigningKeyStore interface {
	SigningKeys(ctx context.Context) ([]coffer.SigningKeyRecord, error)
	// InsertActiveSigningKey stores k as the active key and brings the
	// NotAfter of every other key forward to retireBy.
	InsertActiveSigningKey(ctx context.Context, k coffer.SigningKeyRecord, retireBy time.Time) error
	// DeleteSigningKey deletes an inactive signing key (ENOTFOUND,
	// ECONFLICT for the active one).
	DeleteSigningKey(ctx context.Context, kid string) error
}

// RevocationStore is what ends a token early: revocations, one-time
// token ids, and the state read with every request.
type RevocationStore interface {
	// TokenState reads, in one query and never from a cache, what can
	// end a verified token early: the principal's generation (0: deleted
	// or disabled), the token's revocation and its signing key's state.
	TokenState(ctx context.Context, kind, id, jti, kid string, now time.Time) (store.TokenState, error)
	RevokeToken(ctx context.Context, jti string, expires time.Time) error
	RevokedSince(ctx context.Context, now time.Time) ([]string, error)
	// UseTokenID records a one-time token id until expires; false if it
	// was recorded already (the token was used).
	UseTokenID(ctx context.Context, id string, expires time.Time) (bool, error)
	IsRevoked(ctx context.Context, jti string) (bool, error)
}

// Sealer seals small secrets (signing keys, TOTP secrets) under a data key.
type Sealer interface {
	Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, keyID string, env, aad []byte) ([]byte, error)
}

// Config holds the service's dependencies and settings.
type Config struct {
	Store  Store
	Sealer Sealer
	Tokens *auth.Tokens
	Rand   io.Reader
	Now    func() time.Time
	Logger *slog.Logger
	// SigningKeyLifetime is how long a signing key signs before rotation
	// (default 30 days).
	SigningKeyLifetime time.Duration
	// RefreshInterval is how often shared state (revocations, signing
	// keys) is reloaded from the store (default 2s).
	RefreshInterval time.Duration
	// OnAuthFailure, if set, is told of each failed authentication (for
	// detection and metrics). It must not block.
	OnAuthFailure func(method, principal, ip string)
	// External verifies tokens of trusted external OIDC issuers (nil: none).
	External *auth.External
	// Lockout is the brute-force schedule (zero value: auth.LockoutDelay's).
	Lockout Lockout
	// MaxConcurrentHashes bounds the argon2id hashes running at once on
	// this node (0: DefaultHashConcurrency); a login that finds no slot
	// within HashQueueTimeout (default 2s) is answered 503.
	MaxConcurrentHashes int
	HashQueueTimeout    time.Duration
	// MACs keys recovery-code hashes (the keyring).
	MACs MACer
	// RolesNeedMFA reports whether any of roles requires MFA under the
	// policy in force (nil: none does).
	RolesNeedMFA func(roles []string) bool
	// EnrolmentCodeTTL is how long an MFA enrolment code is valid
	// (default 72h).
	EnrolmentCodeTTL time.Duration
	// ReauthMaxAge is the oldest token accepted where a fresh sign-in is
	// required (default 5m).
	ReauthMaxAge time.Duration
}

// MACer makes and checks HMAC-SHA256 MACs under versioned keyring keys.
type MACer interface {
	MAC(ctx context.Context, keyID string, data []byte) (uint32, []byte, error)
	MACVersion(ctx context.Context, keyID string, version uint32, data []byte) ([]byte, error)
}

// Service is the identity service.
type Service struct {
	c Config

	gate *hashGate

	mu      sync.RWMutex
	revoked map[string]struct{}
	keysVer string // kids of the loaded signing keys, to skip no-op reloads
}

const signingKeyID = "auth/signing"

// New returns a Service; call Start before serving.
func New(c Config) *Service {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SigningKeyLifetime <= 0 {
		c.SigningKeyLifetime = 30 * 24 * time.Hour
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.EnrolmentCodeTTL <= 0 {
		c.EnrolmentCodeTTL = 72 * time.Hour
	}
	if c.ReauthMaxAge <= 0 {
		c.ReauthMaxAge = 5 * time.Minute
	}
	return &Service{c: c, revoked: map[string]struct{}{}, gate: newHashGate(c.MaxConcurrentHashes, c.HashQueueTimeout)}
}

// Start loads (creating if needed) the signing keys and the revocation set,
// then refreshes both in the background until ctx ends.
func (s *Service) Start(ctx context.Context) error {
	if err := s.refresh(ctx); err != nil {
		return err
	}
	// Users made before usernames were normalised get their account key.
	n, err := s.c.Store.FillUsernameKeys(ctx, auth.UsernameKey)
	if err != nil {
		return fmt.Errorf("identity: username keys: %w", err)
	}
	if n > 0 {
		s.c.Logger.InfoContext(ctx, "normalised the usernames of existing users", "users", n)
	}
	go func() {
		t := time.NewTicker(s.c.RefreshInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.refresh(ctx); err != nil && ctx.Err() == nil {
					s.c.Logger.Warn("identity refresh failed", "error", err)
				}
			}
		}
	}()
	return nil
}

// Refresh reloads the signing keys and the revocation set from the store
// now (another node changed them), besides the periodic refresh.
func (s *Service) Refresh(ctx context.Context) error { return s.refresh(ctx) }

func (s *Service) refresh(ctx context.Context) error {
	if err := s.loadSigningKeys(ctx); err != nil {
		return err
	}
	ids, err := s.c.Store.RevokedSince(ctx, s.c.Now())
	if err != nil {
		return fmt.Errorf("identity: load revocations: %w", err)
	}
	set := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	s.mu.Lock()
	s.revoked = set
	s.mu.Unlock()
	return nil
}

func signingAAD(kid string) []byte { return []byte("coffer signing key " + kid) }

// loadSigningKeys publishes every unexpired signing key and signs with the
// newest active one, creating one when none is active or it is too old.
func (s *Service) loadSigningKeys(ctx context.Context) error {
	recs, err := s.c.Store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("identity: load signing keys: %w", err)
	}
	now := s.c.Now()
	var active *coffer.SigningKeyRecord
	for i := range recs {
		if recs[i].Active && (active == nil || recs[i].CreatedAt.After(active.CreatedAt)) {
			active = &recs[i]
		}
	}
	if active == nil || now.After(active.CreatedAt.Add(s.c.SigningKeyLifetime)) {
		if _, err := s.rotateSigningKey(ctx); err != nil {
			return err
		}
		if recs, err = s.c.Store.SigningKeys(ctx); err != nil {
			return fmt.Errorf("identity: load signing keys: %w", err)
		}
	}
	ver := ""
	for _, r := range recs {
		ver += r.KID + fmt.Sprint(r.Active) + ","
	}
	s.mu.RLock()
	same := ver == s.keysVer
	s.mu.RUnlock()
	if same {
		return nil
	}
	var (
		act    auth.SigningKey
		found  bool
		verify []auth.SigningKey
	)
	for _, r := range recs {
		if now.After(r.NotAfter) {
			continue // its tokens have all expired: no longer published
		}
		priv, err := s.c.Sealer.Open(ctx, signingKeyID, r.Sealed, signingAAD(r.KID))
		if err != nil {
			return fmt.Errorf("identity: open signing key %s: %w", r.KID, err)
		}
		k := auth.SigningKey{ID: r.KID, Private: ed25519.PrivateKey(priv), NotAfter: r.NotAfter}
		if r.Active && (!found || r.KID == active.KID) {
			act, found = k, true
			continue
		}
		verify = append(verify, k)
	}
	if !found {
		return errors.New("identity: no active signing key")
	}
	s.c.Tokens.SetKeys(act, verify...)
	s.mu.Lock()
	s.keysVer = ver
	s.mu.Unlock()
	return nil
}

// tokenLifetime is how long a token may verify after it was signed: the
// token lifetime plus the clock skew Verify tolerates past exp.
func (s *Service) tokenLifetime() time.Duration {
	return s.c.Tokens.TTL() + s.c.Tokens.Leeway()
}

// RotateSigningKey makes a new active signing key. The keys rotated out
// stop signing at once and verify only the tokens they signed already:
// their NotAfter is brought forward to now plus the longest token
// lifetime plus the skew (a node that has not yet seen the new key signs
// with the old one for at most its refresh interval, well within the
// skew).
//
// This node signs with the new key at once, the others at their next
// refresh.
func (s *Service) RotateSigningKey(ctx context.Context) error {
	if _, err := s.rotateSigningKey(ctx); err != nil {
		return err
	}
	return s.loadSigningKeys(ctx)
}

func (s *Service) rotateSigningKey(ctx context.Context) (string, error) {
	now := s.c.Now()
	k, err := auth.GenerateSigningKey(s.c.Rand, now)
	if err != nil {
		return "", fmt.Errorf("identity: new signing key: %w", err)
	}
	sealed, err := s.c.Sealer.Seal(ctx, signingKeyID, k.Private, signingAAD(k.ID))
	if err != nil {
		return "", fmt.Errorf("identity: seal signing key: %w", err)
	}
	// Published for its signing lifetime plus the lifetime of the last
	// token it signs.
	notAfter := now.Add(s.c.SigningKeyLifetime + s.tokenLifetime())
	err = s.c.Store.InsertActiveSigningKey(ctx, coffer.SigningKeyRecord{
		KID: k.ID, Sealed: sealed, CreatedAt: now, NotAfter: notAfter, Active: true,
	}, now.Add(s.tokenLifetime()))
	if err != nil {
		return "", err
	}
	return k.ID, nil
}

// SigningKeyRevocation is what RevokeSigningKey did.
type SigningKeyRevocation struct {
	// KID is the key revoked.
	KID string `json:"kid"`
	// NewActiveKID is the key made active in its place, when the revoked
	// key was the active one ("" otherwise).
	NewActiveKID string `json:"new_active_kid,omitempty"`
}

// RevokeSigningKey drops signing key kid at once (a leaked key): it is
// deleted from the store, so that every node refuses every token it
// signed from the next request on (Authenticate reads the key's state
// with each token), and stops publishing it. The active key is first
// replaced by a new one. ENOTFOUND for an unknown kid.
func (s *Service) RevokeSigningKey(ctx context.Context, kid string) (SigningKeyRevocation, error) {
	out := SigningKeyRevocation{KID: kid}
	recs, err := s.c.Store.SigningKeys(ctx)
	if err != nil {
		return out, fmt.Errorf("identity: signing keys: %w", err)
	}
	found := false
	for _, r := range recs {
		if r.KID != kid {
			continue
		}
		found = true
		if r.Active {
			if out.NewActiveKID, err = s.rotateSigningKey(ctx); err != nil {
				return out, err
			}
		}
	}
	if !found {
		return out, coffer.Errorf(coffer.ENOTFOUND, "no such signing key")
	}
	if err := s.c.Store.DeleteSigningKey(ctx, kid); err != nil {
		return out, err
	}
	// This node stops at once; the others at their next refresh, and
	// every node refuses the key's tokens at once through TokenState.
	if err := s.loadSigningKeys(ctx); err != nil {
		return out, err
	}
	return out, nil
}

// Authenticate verifies a bearer token and returns its principal. Every
// failure is the same 401, whatever the reason (logged at debug).
//
// A token that verifies is then checked against the store, in the
// request, never from a cache (one query: Store.TokenState): its
// principal must still exist, be enabled and be at the generation the
// token was issued under (any change that ends its access raises it), its
// jti must not be revoked and its signing key must not have been revoked.
// So a change made on any node ends the token on every node at once. A
// trusted external issuer's token has no principal here: only its
// revocation is read from the store. When the store cannot answer, the
// request fails (503), never passes.
func (s *Service) Authenticate(ctx context.Context, token string) (*coffer.Principal, error) {
	refused := func(reason error) error {
		s.c.Logger.DebugContext(ctx, "token refused", "reason", reason)
		return &coffer.Error{Code: coffer.EUNAUTHENTICATED, Message: "invalid or expired access token", Cause: reason}
	}
	if _, ok := s.c.External.Issuer(token); ok {
		// A trusted external issuer's token: its keys, its claims, roles
		// mapped through the configured role map only.
		p, err := s.c.External.Verify(ctx, token)
		if err != nil {
			return nil, refused(err)
		}
		if s.locallyRevoked(p.TokenID) {
			return nil, refused(errors.New("revoked"))
		}
		revoked, err := s.c.Store.IsRevoked(ctx, p.TokenID)
		if err != nil {
			return nil, unavailable(err)
		}
		if revoked {
			return nil, refused(errors.New("revoked"))
		}
		return p, nil
	}
	p, err := s.c.Tokens.Verify(token)
	if err != nil {
		return nil, refused(err)
	}
	if s.locallyRevoked(p.TokenID) {
		return nil, refused(errors.New("revoked"))
	}
	st, err := s.c.Store.TokenState(ctx, p.Kind, p.ID, p.TokenID, p.TokenKeyID, s.c.Now())
	if err != nil {
		return nil, unavailable(err)
	}
	switch {
	case st.Generation == 0:
		return nil, refused(errors.New("the principal was deleted or disabled"))
	case st.Generation != p.Generation:
		return nil, refused(errors.New("the principal changed since the token was issued (generation)"))
	case st.Revoked:
		return nil, refused(errors.New("revoked"))
	case !st.KeyLive:
		return nil, refused(errors.New("the signing key was revoked or retired"))
	}
	return p, nil
}

// locallyRevoked reports whether this node knows jti as revoked already.
func (s *Service) locallyRevoked(jti string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, revoked := s.revoked[jti]
	return revoked
}

// unavailable is the failure of a token check the store could not
// answer: the request fails closed, with a 503 the caller may retry.
func unavailable(err error) error {
	return &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "the access token cannot be checked now; retry",
		RetryAfterSeconds: 1, Cause: err}
}

// Revoke revokes an access token (RFC 7009): it is refused by every node
// at once (Authenticate reads revocations from the store). The record
// lives until the token's exp plus the skew Verify allows, so the token
// is not accepted again in between. It returns the
// token's id, for the audit log. Revoking a token that does not verify is
// not an error (RFC 7009 §2.2), and revokes nothing: the id is "". A
// trusted external issuer's token is revoked at Coffer the same way, by its
// jti (or, where the issuer may leave jti out, by its hash).
func (s *Service) Revoke(ctx context.Context, token string) (string, error) {
	p, err := s.c.Tokens.Verify(token)
	_, ext := s.c.External.Issuer(token)
	if ext {
		p, err = s.c.External.Verify(ctx, token)
	}
	if err != nil || p.TokenID == "" {
		return "", nil
	}
	if err := s.c.Store.RevokeToken(ctx, p.TokenID, p.TokenExpiry.Add(s.revocationSkew(ext))); err != nil {
		return "", fmt.Errorf("identity: revoke: %w", err)
	}
	s.mu.Lock()
	s.revoked[p.TokenID] = struct{}{}
	s.mu.Unlock()
	return p.TokenID, nil
}

// revocationSkew is how long past a token's exp its verifier still
// accepts it: a revocation record must live as long.
func (s *Service) revocationSkew(external bool) time.Duration {
	if external {
		return s.c.External.Leeway()
	}
	return s.c.Tokens.Leeway()
}

// JWKS returns the published signing keys as a JSON Web Key Set.
func (s *Service) JWKS() ([]byte, error) { return s.c.Tokens.JWKS() }

// Issued is a token response (RFC 6749 §5.1).
type Issued struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

func (s *Service) issue(p coffer.Principal, amr []string) (Issued, error) {
	scope := ""
	for i, r := range p.Roles {
		if i > 0 {
			scope += " "
		}
		scope += "role:" + r
	}
	iss, err := s.c.Tokens.Issue(p, scope, amr)
	if err != nil {
		return Issued{}, fmt.Errorf("identity: issue token: %w", err)
	}
	return Issued{
		AccessToken: iss.Token, TokenType: "Bearer",
		ExpiresIn: int64(time.Until(iss.ExpiresAt).Round(time.Second) / time.Second),
		Scope:     iss.Scope,
	}, nil
}

// ErrInvalidClient is the RFC 6749 invalid_client failure.
var ErrInvalidClient = &coffer.Error{Code: coffer.EUNAUTHENTICATED, Message: "invalid_client"}

// ClientCredentials runs the client-credentials grant: it admits the
// attempt under the lockout rules (see Lockout), verifies the secret in
// constant time, and issues an access token. Client secrets are SHA-256
// hashes of 256 random bits, cheap to check, so they take no hashing slot.
func (s *Service) ClientCredentials(ctx context.Context, clientID string, clientSecret secret.Password, ip string) (Issued, *coffer.Principal, error) {
	a, err := s.begin(ctx, "client_secret", clientID, "client:"+clientID, ip)
	if err != nil {
		return Issued{}, nil, err
	}
	c, err := s.c.Store.Client(ctx, clientID)
	if err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
		return Issued{}, nil, err
	}
	// Verify even for an unknown client so timing does not tell.
	hash := c.SecretHash
	if err != nil {
		hash = "sha256$0000000000000000000000000000000000000000000000000000000000000000"
	}
	ok := auth.VerifyClientSecret(hash, clientSecret)
	if err != nil || !ok || c.Disabled {
		return Issued{}, nil, a.failed(ctx, ErrInvalidClient)
	}
	a.succeeded(ctx)
	p := coffer.Principal{ID: c.ID, Kind: coffer.KindClient, Roles: c.Roles, Attributes: c.Attributes,
		Generation: c.Generation}
	iss, err := s.issue(p, []string{"client_secret"})
	if err != nil {
		return Issued{}, nil, err
	}
	return iss, &p, nil
}

// NewClient is a client as created, with its secret shown once.
type NewClient struct {
	ClientID     string            `json:"client_id"`
	ClientSecret string            `json:"client_secret"`
	Name         string            `json:"name"`
	Roles        []string          `json:"roles"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
}

// CreateClient makes a service client with a fresh secret.
func (s *Service) CreateClient(ctx context.Context, name string, roles []string, attrs map[string]string) (NewClient, error) {
	id, err := auth.NewClientID(s.c.Rand)
	if err != nil {
		return NewClient{}, fmt.Errorf("identity: client id: %w", err)
	}
	cs, err := auth.NewClientSecret(s.c.Rand)
	if err != nil {
		return NewClient{}, fmt.Errorf("identity: client secret: %w", err)
	}
	if roles == nil {
		roles = []string{}
	}
	now := s.c.Now().UTC()
	c := coffer.Client{ID: id, Name: name, SecretHash: auth.HashClientSecret(secret.NewPassword(cs)), Roles: roles,
		Attributes: attrs, CreatedAt: now}
	if err := s.c.Store.CreateClient(ctx, c); err != nil {
		return NewClient{}, err
	}
	return NewClient{ClientID: id, ClientSecret: cs, Name: name, Roles: roles, Attributes: attrs, CreatedAt: now}, nil
}

// ClientInfo is a client as listed (never its secret).
type ClientInfo struct {
	ClientID   string            `json:"client_id"`
	Name       string            `json:"name"`
	Roles      []string          `json:"roles"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Disabled   bool              `json:"disabled"`
	CreatedAt  time.Time         `json:"created_at"`
}

func clientInfo(c coffer.Client) ClientInfo {
	return ClientInfo{ClientID: c.ID, Name: c.Name, Roles: c.Roles, Attributes: c.Attributes, Disabled: c.Disabled,
		CreatedAt: c.CreatedAt}
}

// Client returns a client by id (ENOTFOUND if none), for deciding who may
// act on it.
func (s *Service) Client(ctx context.Context, id string) (ClientInfo, error) {
	c, err := s.c.Store.Client(ctx, id)
	if err != nil {
		return ClientInfo{}, err
	}
	return clientInfo(c), nil
}

// UpdateClient changes a client from was (as read when the change was
// decided) to next: its name, roles, attributes and whether it is
// disabled (a disabled client gets no new token). It is refused (409)
// when the client's roles or attributes changed since was was read, so
// that a decision made on the client as it was never applies to another.
// The caller decides who may (see httpapi).
func (s *Service) UpdateClient(ctx context.Context, was, next ClientInfo) (ClientInfo, error) {
	if next.Roles == nil {
		next.Roles = []string{}
	}
	c := coffer.Client{ID: was.ClientID, Name: next.Name, Roles: next.Roles, Attributes: next.Attributes,
		Disabled: next.Disabled}
	if err := s.c.Store.UpdateClient(ctx, c, was.Roles, was.Attributes); err != nil {
		return ClientInfo{}, err
	}
	return s.Client(ctx, was.ClientID)
}

// Clients lists the service clients.
func (s *Service) Clients(ctx context.Context) ([]ClientInfo, error) {
	cs, err := s.c.Store.Clients(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ClientInfo, 0, len(cs))
	for _, c := range cs {
		out = append(out, clientInfo(c))
	}
	return out, nil
}

// RotateClientSecret gives a client a new secret (shown once); the old one
// stops working at once, and so do the tokens already issued (the
// client's generation is raised with the secret).
func (s *Service) RotateClientSecret(ctx context.Context, id string) (NewClient, error) {
	c, err := s.c.Store.Client(ctx, id)
	if err != nil {
		return NewClient{}, err
	}
	cs, err := auth.NewClientSecret(s.c.Rand)
	if err != nil {
		return NewClient{}, fmt.Errorf("identity: client secret: %w", err)
	}
	if err := s.c.Store.UpdateClientSecret(ctx, id, auth.HashClientSecret(secret.NewPassword(cs))); err != nil {
		return NewClient{}, err
	}
	return NewClient{ClientID: c.ID, ClientSecret: cs, Name: c.Name, Roles: c.Roles, Attributes: c.Attributes, CreatedAt: c.CreatedAt}, nil
}

// DeleteClient removes a client; its secret and its tokens stop working
// at once, on every node.
func (s *Service) DeleteClient(ctx context.Context, id string) error {
	return s.c.Store.DeleteClient(ctx, id)
}

// Introspection is an RFC 7662 answer.
type Introspection struct {
	Active    bool     `json:"active"`
	Sub       string   `json:"sub,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	Kind      string   `json:"coffer_kind,omitempty"`
}

// Introspect tells whether a token is active (RFC 7662); an invalid,
// expired or revoked token is simply inactive.
func (s *Service) Introspect(ctx context.Context, token string) Introspection {
	p, err := s.Authenticate(ctx, token)
	if err != nil {
		return Introspection{Active: false}
	}
	in := Introspection{Active: true, Sub: p.ID, Exp: p.TokenExpiry.Unix(), TokenType: "Bearer", Roles: p.Roles, Kind: p.Kind}
	if p.Kind == coffer.KindClient {
		in.ClientID = p.ID
	}
	return in
}

// AuthenticateClientCert returns the principal of a service client that
// presented a certificate issued by Coffer's CA for clientID (already
// verified by the TLS layer). A deleted or disabled client is refused.
func (s *Service) AuthenticateClientCert(ctx context.Context, clientID string) (*coffer.Principal, error) {
	c, err := s.c.Store.Client(ctx, clientID)
	if err != nil || c.Disabled {
		if err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
			return nil, err
		}
		return nil, coffer.Errorf(coffer.EUNAUTHENTICATED, "client certificate names no active client")
	}
	// The handshake of this connection proved the key: a fresh sign-in.
	return &coffer.Principal{ID: c.ID, Kind: coffer.KindClient, Roles: c.Roles, Attributes: c.Attributes,
		AuthTime: s.c.Now(), Generation: c.Generation}, nil
}
