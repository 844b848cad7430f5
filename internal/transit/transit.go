package transit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Defaults for Config.
const (
	// DefaultMaxBatch is how many items one Encrypt, Decrypt or Rewrap
	// (or one of their batch forms) takes at most; the server's default
	// limits.max_batch_items is the same.
	DefaultMaxBatch = 1000
	// DefaultMaxPlaintextBytes bounds one decoded plaintext.
	DefaultMaxPlaintextBytes = 1 << 20
	// DefaultMaxContextBytes bounds one decoded context.
	DefaultMaxContextBytes = 4 << 10
	// DefaultRotateAfter is how many encryptions a version makes before
	// the key rotates: 2^31, half the 2^32 messages allowed under one
	// AES-GCM key with random nonces.
	DefaultRotateAfter = int64(1) << 31
	// DefaultFlushEvery is how many unflushed encryptions of a key a node
	// gathers before it adds them to the store's count.
	DefaultFlushEvery = 4096
)

// Limits on key configuration.
const (
	// MinAutoRotatePeriod is the shortest auto_rotate_period a key may have.
	MinAutoRotatePeriod = time.Hour
	// MaxAutoRotatePeriod is the longest.
	MaxAutoRotatePeriod = 100 * 365 * 24 * time.Hour
)

// maxProblems bounds how many item problems one error lists.
const maxProblems = 20

// TransitKey is a transit key's metadata as stored. Its material is in the
// keyring under KeyID(Name), never here.
type TransitKey = coffer.TransitKey

// Store keeps transit key metadata; the SQLite and PostgreSQL stores
// implement it. Methods return a *coffer.Error with ENOTFOUND for a key
// that does not exist. Implementations must be safe for concurrent use.
type Store interface {
	// CreateTransitKey inserts k; it returns a *coffer.Error with ECONFLICT
	// if a key of that name exists.
	CreateTransitKey(ctx context.Context, k TransitKey) error
	// TransitKey returns the key called name.
	TransitKey(ctx context.Context, name string) (TransitKey, error)
	// ConfigureTransitKey writes k.Name's MinDecryptionVersion, Deletable
	// and AutoRotatePeriod, and no other field.
	ConfigureTransitKey(ctx context.Context, k TransitKey) error
	// RecordTransitVersion raises name's LatestVersion to v (a stored
	// newer one stays) and zeroes its EncryptionsSinceRotate, and writes
	// no other field.
	RecordTransitVersion(ctx context.Context, name string, v uint32) error
	// TransitKeyNames returns the names of every key, in order.
	TransitKeyNames(ctx context.Context) ([]string, error)
	// DeleteTransitKey removes the key called name.
	DeleteTransitKey(ctx context.Context, name string) error
	// AddTransitEncryptions adds n to the key's EncryptionsSinceRotate in
	// one atomic step (UPDATE … SET encryptions = encryptions + n) and
	// returns the new count.
	AddTransitEncryptions(ctx context.Context, name string, n int64) (int64, error)
}

// Versions lists a key id's data key versions; the keyring's store
// implements it. Only the version, state and creation time are read.
type Versions interface {
	DataKeys(ctx context.Context, keyID string) ([]coffer.DataKey, error)
}

// Keys seals and opens under versioned data keys; *keyring.Keyring
// implements it.
//
// Open returns envelope.ErrDecrypt for an envelope that does not open and
// reloads a key id at once for an envelope of a version newer than any it
// holds; transit keys seal with SealVersion under the version the store
// records as latest, and Seal (the newest version, version 1 made on first
// use) serves only the import wrapping key; Rotate and Import make a new
// version and return it; Disown retires one this service could not
// record; Destroy crypto-shreds the key id, after which every method
// returns keyring.ErrKeyDestroyed.
type Keys interface {
	Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	// SealVersion seals under version n of keyID, not the newest.
	SealVersion(ctx context.Context, keyID string, n uint32, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, keyID string, env, aad []byte) ([]byte, error)
	Rotate(ctx context.Context, keyID string) (uint32, error)
	// Import makes a new version from the given 32-byte material, which
	// it zeroes, and returns it.
	Import(ctx context.Context, keyID string, material []byte) (uint32, error)
	Destroy(ctx context.Context, keyID string) error
	// Disown retires version n, newest or not: a version this service
	// made but could not record.
	Disown(ctx context.Context, keyID string, n uint32) error
	// ImportAt makes version n from the given 32-byte material, which it
	// zeroes, only if every version the key id has is below n
	// (keyring.ErrVersionTaken otherwise): a key imported from Vault
	// keeps its version numbers.
	ImportAt(ctx context.Context, keyID string, n uint32, material []byte) error
	// OpenForeign opens what Vault sealed under version n, imported from
	// it: nonce ‖ AES-256-GCM under the version's bytes themselves.
	OpenForeign(ctx context.Context, keyID string, n uint32, sealed []byte) ([]byte, error)
	// MACVersion returns HMAC-SHA256 of data under the MAC key of
	// version n of keyID (never the key Seal encrypts with); an unknown,
	// retired or destroyed version is an error as in Open.
	MACVersion(ctx context.Context, keyID string, n uint32, data []byte) ([]byte, error)
}

// Authorizer decides whether a principal may act on a resource.
//
// Allowed returns nil when p may take action on resource from ip, and a
// *coffer.Error with code EFORBIDDEN when it may not; any other error is
// an outage and denies as well. It records the decision in note (Allow with
// the rule, or Deny with the reason); note may be nil.
type Authorizer interface {
	Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error
}

// Config holds a Service's dependencies and limits. Store, Versions, Keys
// and Auth are required; zero limits take their defaults.
type Config struct {
	Store    Store
	Versions Versions
	Keys     Keys
	Auth     Authorizer
	// Meta keeps the sealed wrapping key of imports; without it the
	// wrapping key and imports fail.
	Meta Meta
	// Now tells the time for creation and key age; nil means time.Now.
	Now func() time.Time
	// Log receives failures that do not fail a request (a count that
	// could not be flushed); nil discards them. It never receives a value.
	Log *slog.Logger
	// MaxBatch bounds the items of one call (default DefaultMaxBatch).
	MaxBatch int
	// MaxPlaintextBytes bounds one plaintext (default DefaultMaxPlaintextBytes).
	MaxPlaintextBytes int
	// MaxContextBytes bounds one context (default DefaultMaxContextBytes).
	MaxContextBytes int
	// RotateAfter is how many encryptions a version makes before the key
	// rotates (default DefaultRotateAfter). It must stay far below 2^32.
	RotateAfter int64
	// FlushEvery is how many unflushed encryptions of a key a node holds
	// before it flushes them (default DefaultFlushEvery).
	FlushEvery int64
	// WrappingKeyRotateAfter makes a new import wrapping key once the
	// current one is this old (0: never).
	WrappingKeyRotateAfter time.Duration
	// WrappingKeyGrace is how long after a rotation the previous wrapping
	// key still unwraps imports wrapped for it (0: not at all).
	WrappingKeyGrace time.Duration
	// AllowSHA1 accepts RSA-OAEP with SHA-1 (hash_function SHA1) in
	// imports, for tooling that cannot do better; refused by default.
	AllowSHA1 bool
	// KeyCacheFor is how long a key's metadata is served from memory
	// without a change notification (default DefaultKeyCacheFor; see
	// ForgetKeys). A rotation made by another node is seen within the
	// notification's latency, or at most this long when notifications are
	// down.
	KeyCacheFor time.Duration

	// wrappingBits is the RSA size of new wrapping keys (0: 4096); only
	// this package's tests set it.
	wrappingBits int
}

// Service runs the transit use cases. It is safe for concurrent use; make
// one per process.
type Service struct {
	c Config

	mu   sync.Mutex
	keys map[string]*keyState

	// cache holds key metadata for the cryptographic operations.
	cache keyCache

	// byokMu guards byok, the wrapping keys of imports once loaded.
	byokMu sync.Mutex
	byok   byokKeys
}

// New returns a Service.
func New(c Config) *Service {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxPlaintextBytes <= 0 {
		c.MaxPlaintextBytes = DefaultMaxPlaintextBytes
	}
	if c.MaxContextBytes <= 0 {
		c.MaxContextBytes = DefaultMaxContextBytes
	}
	if c.RotateAfter <= 0 {
		c.RotateAfter = DefaultRotateAfter
	}
	if c.FlushEvery <= 0 {
		c.FlushEvery = DefaultFlushEvery
	}
	if c.KeyCacheFor <= 0 {
		c.KeyCacheFor = DefaultKeyCacheFor
	}
	return &Service{c: c, keys: make(map[string]*keyState)}
}

// Caller is who asks and from where; Note collects what the call did.
type Caller struct {
	Principal *coffer.Principal
	IP        string
	Note      *coffer.AccessNote
}

// KeyID returns the keyring key id of the transit key called name.
func KeyID(name string) string { return coffer.KeyID{Kind: coffer.KeyTransit, Name: name}.String() }

// Resource returns the policy resource of the transit key called name.
func Resource(name string) string { return "keys/" + name }

// ValidName reports whether s may name a transit key: [a-z0-9_-]{1,64}.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Client-facing messages callers may compare with coffer.ErrorMessage.
const (
	// MsgUndecryptable is the one message of every ciphertext that does
	// not decrypt, whatever the reason.
	MsgUndecryptable = "ciphertext cannot be decrypted"
	msgNotFound      = "transit key not found"
	msgBadName       = "key name must match [a-z0-9_-]{1,64}"
)

// undecryptable returns the opaque error of a ciphertext that does not
// decrypt (400). It has no cause: nothing about why may reach a log line
// that an attacker could read either.
func undecryptable() error {
	return coffer.Errorf(coffer.EMALFORMED, MsgUndecryptable)
}

// begin records the target of a call and checks the key name.
func begin(c Caller, action, name string, count int) error {
	if c.Note != nil {
		c.Note.Count = count
	}
	if !ValidName(name) {
		c.Note.Target(action, "keys")
		return coffer.Errorf(coffer.EINVALID, msgBadName)
	}
	c.Note.Target(action, Resource(name))
	return nil
}

// touched notes, when err is nil, the version of the key that info shows
// as its latest (the one a creation, import or rotation made) as a target
// of c's call, and returns info and err.
func (c Caller) touched(info KeyInfo, err error) (KeyInfo, error) {
	if err == nil {
		c.Note.Touch(coffer.KeyVersionTarget(info.Name, info.LatestVersion))
	}
	return info, err
}

// admitAdmin begins an administrative call on the key name and authorizes
// it (policy action admin on keys/NAME), noting it for the audit log as
// action keys.OP: the policy asks only for admin, but the log must tell a
// rotation from a deletion.
func (s *Service) admitAdmin(c Caller, op, name string) error {
	action := "keys." + op
	if err := begin(c, action, name, 0); err != nil {
		return err
	}
	err := s.authorize(c, "admin", name)
	if c.Note != nil {
		c.Note.Action = action
	}
	return err
}

// authorize asks the Authorizer and makes sure the note holds the decision.
func (s *Service) authorize(c Caller, action, name string) error {
	err := s.c.Auth.Allowed(c.Principal, action, Resource(name), c.IP, c.Note)
	if err == nil {
		if c.Note != nil && c.Note.Decision == "" {
			c.Note.Allow("")
		}
		return nil
	}
	if c.Note != nil && c.Note.Decision != "deny" {
		c.Note.Deny("not allowed")
	}
	switch coffer.ErrorCode(err) {
	case coffer.EFORBIDDEN, coffer.ENOTFOUND, coffer.EUNAVAILABLE:
		return err
	}
	// The policy could not decide (an outage): denied, and not the caller's
	// fault.
	return fmt.Errorf("transit: authorize %s %s: %w", action, Resource(name), err)
}

// load returns the stored key, noting a missing one, and caches it for
// loadCached.
func (s *Service) load(ctx context.Context, c Caller, name string) (TransitKey, error) {
	gen, at := s.cache.generation(), s.c.Now()
	k, err := s.c.Store.TransitKey(ctx, name)
	if err == nil {
		s.cache.put(gen, k, at)
	}
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		if c.Note != nil {
			c.Note.Missing = true
		}
		return TransitKey{}, coffer.Errorf(coffer.ENOTFOUND, msgNotFound)
	}
	if err != nil {
		return TransitKey{}, fmt.Errorf("transit: load key: %w", err)
	}
	return k, nil
}

// problemsError returns a 422 listing at most maxProblems problems.
func problemsError(problems []string) error {
	if len(problems) > maxProblems {
		more := len(problems) - maxProblems
		problems = append(problems[:maxProblems:maxProblems], fmt.Sprintf("and %d more", more))
	}
	return &coffer.Error{Code: coffer.EINVALID, Message: strings.Join(problems, "; "), Problems: problems}
}

// checkBatch checks the number of items; field names them in a refusal.
func (s *Service) checkBatch(n int, field string) error {
	switch {
	case n == 0:
		return coffer.Errorf(coffer.EINVALID, "%s: at least one item is required", field)
	case n > s.c.MaxBatch:
		return coffer.Errorf(coffer.ETOOLARGE, "%s: at most %d items per request", field, s.c.MaxBatch)
	}
	return nil
}
