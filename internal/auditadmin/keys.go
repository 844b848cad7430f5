package auditadmin

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// The keyring ids of the audit keys: the HMAC key that chains the audit
// log and the Ed25519 seed that signs its checkpoints. Both rotate (see
// keyadmin); every version stays, never retired or destroyed (the keyring
// refuses, see keyring.Permanent), because verifying the log needs the
// version each event and checkpoint names.
var (
	HMACKeyID    = coffer.AuditHMACKey.String()
	SigningKeyID = coffer.AuditSigningKey.String()
)

// IsKey reports whether keyID is one of the audit keys.
func IsKey(keyID string) bool {
	id := coffer.ParseKeyID(keyID)
	return id == coffer.AuditHMACKey || id == coffer.AuditSigningKey
}

// KeySource is the audit Writer's audit.KeySource: the keyring's current
// versions of the audit keys (version 1 is made on first use). A rotation
// on any node reaches this one within the keyring's cache time. It keeps
// the keys of the versions it returned last, so that a batch costs two
// keyring cache lookups, and a key is unwrapped and derived only when its
// version changes.
type KeySource struct {
	keys *keyring.Keyring
	mu   sync.Mutex
	last audit.Keys
}

// NewKeySource returns the audit keys of keys.
func NewKeySource(keys *keyring.Keyring) *KeySource { return &KeySource{keys: keys} }

// CurrentKeys implements audit.KeySource. It never modifies the slices it
// returned before: a new version gets new ones.
func (s *KeySource) CurrentKeys(ctx context.Context) (audit.Keys, error) {
	hv, err := s.keys.CurrentVersion(ctx, HMACKeyID)
	if err != nil {
		return audit.Keys{}, fmt.Errorf("audit key: %w", err)
	}
	sv, err := s.keys.CurrentVersion(ctx, SigningKeyID)
	if err != nil {
		return audit.Keys{}, fmt.Errorf("audit signing key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.last
	if k.HMACVersion != hv {
		hk, err := s.keys.KeyVersion(ctx, HMACKeyID, hv)
		if err != nil {
			return audit.Keys{}, fmt.Errorf("audit key version %d: %w", hv, err)
		}
		k.HMACVersion, k.HMACKey = hv, hk.Bytes()
		hk.Zero()
	}
	if k.SigningVersion != sv {
		sk, err := s.keys.KeyVersion(ctx, SigningKeyID, sv)
		if err != nil {
			return audit.Keys{}, fmt.Errorf("audit signing key version %d: %w", sv, err)
		}
		seed := sk.Bytes()
		k.SigningVersion, k.SigningKey = sv, ed25519.NewKeyFromSeed(seed)
		clear(seed)
		sk.Zero()
	}
	s.last = k
	return k, nil
}

// KeyLookup is the verifiers' audit.KeyLookup: any version of the audit
// keys from the keyring. It never makes a key: a version the keyring does
// not have is audit.ErrUnknownKeyVersion (an edited key_version, or a
// store that lost a key), which verification reports naming the event.
type KeyLookup struct{ Keys *keyring.Keyring }

// HMACKeyVersion implements audit.KeyLookup.
func (l KeyLookup) HMACKeyVersion(ctx context.Context, v uint32) ([]byte, error) {
	return l.version(ctx, HMACKeyID, v)
}

// PublicKeyVersion implements audit.KeyLookup.
func (l KeyLookup) PublicKeyVersion(ctx context.Context, v uint32) (ed25519.PublicKey, error) {
	seed, err := l.version(ctx, SigningKeyID, v)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	priv := ed25519.NewKeyFromSeed(seed)
	defer clear(priv) // Public returns a copy
	return priv.Public().(ed25519.PublicKey), nil
}

func (l KeyLookup) version(ctx context.Context, keyID string, v uint32) ([]byte, error) {
	k, err := l.Keys.KeyVersion(ctx, keyID, v)
	if errors.Is(err, keyring.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s version %d", audit.ErrUnknownKeyVersion, keyID, v)
	}
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", keyID, v, err)
	}
	defer k.Zero()
	return k.Bytes(), nil
}
