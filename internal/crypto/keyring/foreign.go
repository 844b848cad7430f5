package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// Keys brought from another system (transit's import from HashiCorp
// Vault) come with values that system sealed under them in its own
// format. ImportAt keeps each such key at the version number it had there,
// and OpenForeign opens those values. Coffer itself never seals that way:
// everything it seals is an envelope under the keys derived from the
// version (see the package doc).

// ErrVersionTaken is what ImportAt returns when the key id already has the
// version asked for, or a later one: imported versions keep their numbers,
// so they can only be added above every existing one.
var ErrVersionTaken = errors.New("keyring: the key id already has this version or a later one")

// foreignOverhead is a foreign sealed value's shortest length: a 12-byte
// nonce and a 16-byte tag.
const foreignOverhead = envelope.NonceSize + envelope.TagSize

// ImportAt makes version n of keyID from material, a key brought from
// another system together with its version number there, and returns nil;
// it is wrapped under the root key and stored like any version, and,
// being the newest, becomes the one Seal encrypts with (a SealVersion
// caller's once it records it). Versions below n the key id does not have
// stay missing: nothing opens under them. A key id that has version n or a
// later one is refused (ErrVersionTaken), as is material that is not 32
// bytes (ErrMaterialSize) and a Permanent key id (ErrKeyPermanent).
// ImportAt zeroes material before it returns, whatever happens.
func (kr *Keyring) ImportAt(ctx context.Context, keyID string, n uint32, material []byte) error {
	defer clear(material)
	if Permanent(keyID) {
		return fmt.Errorf("%w: %s", ErrKeyPermanent, keyID)
	}
	if len(material) != dataKeySize {
		return fmt.Errorf("%w: %s: got %d bytes", ErrMaterialSize, keyID, len(material))
	}
	if n == 0 {
		return fmt.Errorf("keyring: import %s: versions start at 1", keyID)
	}
	l := kr.stripe(keyID)
	l.Lock()
	defer l.Unlock()
	kr.mu.RLock()
	cur := kr.keys[keyID]
	kr.mu.RUnlock()
	e, err := kr.load(ctx, keyID, cur)
	if err != nil {
		return err
	}
	kr.install(keyID, e)
	switch {
	case e.destroyed:
		return fmt.Errorf("%w: %s", ErrKeyDestroyed, keyID)
	case e.max >= n:
		return fmt.Errorf("%w: %s has version %d, import of %d refused", ErrVersionTaken, keyID, e.max, n)
	}
	v, err := kr.createFrom(ctx, keyID, n, material)
	if errors.Is(err, ErrVersionExists) {
		return fmt.Errorf("%w: %s version %d was made meanwhile", ErrVersionTaken, keyID, n)
	}
	if err != nil {
		return err
	}
	kr.keep(keyID, e, v)
	return nil
}

// OpenForeign opens a value another system sealed under version n of
// keyID, which was imported from it: sealed is a 12-byte nonce followed by
// the AES-256-GCM ciphertext and tag, made under the version's 32 key
// bytes themselves, with no additional data (HashiCorp Vault's transit
// aes256-gcm96 layout). Every value that does not open is
// envelope.ErrDecrypt; a retired, destroyed or missing version is the
// error Open returns for it. The caller decides which versions came from
// elsewhere: nothing Coffer seals opens this way.
//
// The AES key is built from the version's bytes on the first call for
// that version (one unwrap under the root key) and kept with the cached
// version, so later calls cost what an Open costs.
func (kr *Keyring) OpenForeign(ctx context.Context, keyID string, n uint32, sealed []byte) ([]byte, error) {
	if len(sealed) < foreignOverhead {
		return nil, envelope.ErrDecrypt
	}
	var (
		out     []byte
		missing *keyVersion
		wrapped []byte
	)
	err := kr.withVersion(ctx, keyID, n, envelope.ErrDecrypt, func(v *keyVersion) error {
		if g := v.foreign.Load(); g != nil {
			var err error
			out, err = openForeign(*g, sealed)
			return err
		}
		missing, wrapped = v, v.wrapped
		return nil
	})
	if err != nil || missing == nil {
		return out, err
	}
	raw, err := kr.rootUnwrap(ctx, wrapped, wrapAAD(keyID, n))
	if err != nil {
		return nil, fmt.Errorf("keyring: unwrap %s version %d: %w", keyID, n, err)
	}
	defer clear(raw)
	if len(raw) != dataKeySize {
		return nil, fmt.Errorf("keyring: unwrap %s version %d: data key is %d bytes, want %d", keyID, n, len(raw), dataKeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	missing.foreign.CompareAndSwap(nil, &g)
	return openForeign(g, sealed)
}

// openForeign opens nonce ‖ ciphertext ‖ tag under g.
func openForeign(g cipher.AEAD, sealed []byte) ([]byte, error) {
	pt, err := g.Open(nil, sealed[:envelope.NonceSize], sealed[envelope.NonceSize:], nil)
	if err != nil {
		return nil, envelope.ErrDecrypt
	}
	return pt, nil
}
