package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
)

// Keys are the versions of the audit keys a Writer uses now: the HMAC key
// that chains events and the Ed25519 key that signs checkpoints. Versions
// start at 1. A Keys value is itself a KeySource that never rotates.
type Keys struct {
	HMACVersion    uint32
	HMACKey        []byte // at least 16 bytes; 32 recommended
	SigningVersion uint32
	SigningKey     ed25519.PrivateKey
}

// CurrentKeys implements KeySource: k, always.
func (k Keys) CurrentKeys(context.Context) (Keys, error) { return k, nil }

// String keeps key bytes out of every formatted value.
func (k Keys) String() string {
	return fmt.Sprintf("audit.Keys{hmac v%d, signing v%d}", k.HMACVersion, k.SigningVersion)
}

// GoString keeps key bytes out of %#v.
func (k Keys) GoString() string { return k.String() }

// check reports what is wrong with k, if anything, without its bytes.
func (k Keys) check() error {
	switch {
	case k.HMACVersion == 0 || k.SigningVersion == 0:
		return errors.New("audit: key versions start at 1")
	case len(k.HMACKey) < minHMACKeyLen:
		return fmt.Errorf("audit: HMAC key must be at least %d bytes", minHMACKeyLen)
	case len(k.SigningKey) != ed25519.PrivateKeySize:
		return errors.New("audit: signing key is not an Ed25519 private key")
	}
	return nil
}

// KeySource gives a Writer the audit keys that are current. The Writer asks
// once per batch (and once at start), so a rotation is picked up without a
// restart: the next event is chained under the new HMAC key version, and
// the next checkpoint signed by the new signing key version, after the
// events written since the last checkpoint are sealed under the old one.
//
// CurrentKeys must be safe to call from the Writer's goroutine while other
// code rotates the keys, should be cheap (it is on the commit path), and
// must never return a version lower than one the log already holds: the
// Writer refuses such a batch, as Verify would refuse the log. The Writer
// keeps the returned slices until the next call that returns another
// version, so they must not be modified afterwards. An error fails the
// batch closed: Log returns EUNAVAILABLE and nothing is written.
type KeySource interface {
	CurrentKeys(ctx context.Context) (Keys, error)
}

// ErrUnknownKeyVersion is wrapped by a KeyLookup's error for a version it
// does not have. Verify reports it as a finding naming the event or
// checkpoint that names the version (an edited key_version, or a log
// checked without all of its keys); any other lookup error aborts
// verification as an error.
var ErrUnknownKeyVersion = errors.New("audit: unknown key version")

// KeyLookup gives verifiers every version of the audit keys: every version
// that ever chained an event or signed a checkpoint must stay available,
// so audit keys are never retired or destroyed.
type KeyLookup interface {
	// HMACKeyVersion returns version v (from 1) of the chain's HMAC key.
	HMACKeyVersion(ctx context.Context, v uint32) ([]byte, error)
	// PublicKeyVersion returns the public key of version v (from 1) of
	// the checkpoint signing key.
	PublicKeyVersion(ctx context.Context, v uint32) (ed25519.PublicKey, error)
}

// KeyVersions is a KeyLookup over keys held in memory, by version.
type KeyVersions struct {
	HMAC   map[uint32][]byte
	Public map[uint32]ed25519.PublicKey
}

// HMACKeyVersion implements KeyLookup.
func (k KeyVersions) HMACKeyVersion(_ context.Context, v uint32) ([]byte, error) {
	if key, ok := k.HMAC[v]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("%w: HMAC key version %d", ErrUnknownKeyVersion, v)
}

// PublicKeyVersion implements KeyLookup.
func (k KeyVersions) PublicKeyVersion(_ context.Context, v uint32) (ed25519.PublicKey, error) {
	if key, ok := k.Public[v]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("%w: signing key version %d", ErrUnknownKeyVersion, v)
}

// errNoKey marks a version the verifier's KeyLookup does not have.
var errNoKey = errors.New("no such key version")

// verifyKeys caches, for one verification, the chainer of each HMAC key
// version and the public key of each signing key version it has met, so
// that the KeyLookup is asked once per version.
type verifyKeys struct {
	src    KeyLookup
	chains map[uint32]*chainer
	pubs   map[uint32]ed25519.PublicKey
}

func newVerifyKeys(src KeyLookup) *verifyKeys {
	return &verifyKeys{src: src, chains: map[uint32]*chainer{}, pubs: map[uint32]ed25519.PublicKey{}}
}

// chainer returns the chainer of HMAC key version v: an error wrapping
// errNoKey when the lookup does not have it, another error when the lookup
// failed or returned a key too short to be one.
func (k *verifyKeys) chainer(ctx context.Context, v uint32) (*chainer, error) {
	if c := k.chains[v]; c != nil {
		return c, nil
	}
	key, err := k.src.HMACKeyVersion(ctx, v)
	switch {
	case errors.Is(err, ErrUnknownKeyVersion):
		return nil, fmt.Errorf("%w: %w", errNoKey, err)
	case err != nil:
		return nil, fmt.Errorf("audit: verify: HMAC key version %d: %w", v, err)
	case len(key) < minHMACKeyLen:
		return nil, fmt.Errorf("audit: verify: HMAC key version %d is shorter than %d bytes", v, minHMACKeyLen)
	}
	c := newChainer(key)
	k.chains[v] = c
	return c, nil
}

// public returns the public key of signing key version v, with errors as
// chainer.
func (k *verifyKeys) public(ctx context.Context, v uint32) (ed25519.PublicKey, error) {
	if p := k.pubs[v]; p != nil {
		return p, nil
	}
	p, err := k.src.PublicKeyVersion(ctx, v)
	switch {
	case errors.Is(err, ErrUnknownKeyVersion):
		return nil, fmt.Errorf("%w: %w", errNoKey, err)
	case err != nil:
		return nil, fmt.Errorf("audit: verify: signing key version %d: %w", v, err)
	case len(p) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("audit: verify: signing key version %d is not an Ed25519 public key", v)
	}
	k.pubs[v] = p
	return p, nil
}
