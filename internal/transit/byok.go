package transit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" // #nosec G505 -- SHA-1 only as the RSA-OAEP hash some BYOK tooling uses, never for a signature
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// Bring-your-own-key import follows the well-known Vault transit scheme, so
// that existing tooling works: the caller fetches the deployment's RSA-4096
// wrapping key, makes a fresh 32-byte AES key, and sends
//
//	RSA-OAEP(wrapping key, hash, empty label, AES key) ‖ KWP(AES key, target key)
//
// KWP being AES key wrap with padding (RFC 5649). The target key becomes a
// keyring version like any other: wrapped under the root key, never
// exportable.

// WrappingKeyName is the path segment of the wrapping key
// (GET /v1/keys/wrapping_key); no transit key may have that name.
const WrappingKeyName = "wrapping_key"

// Client-facing messages of an import.
const (
	// MsgNotAKey is the one message of every import ciphertext that does not
	// unwrap, whether RSA-OAEP or the key wrap failed: nothing more is said.
	MsgNotAKey      = "the ciphertext does not unwrap to a key"
	msgImportSize   = "the imported key must be 32 bytes (an AES-256-GCM key)"
	msgReservedName = "the key name wrapping_key is reserved"
)

const (
	// wrappingKeyBits is the size of the RSA wrapping key.
	wrappingKeyBits = 4096
	// wrappingKeyID is the keyring key id that seals the wrapping key's
	// private key. Transit key ids are "transit/NAME", so none is this one.
	wrappingKeyID = "transit-byok/wrapping-key"
	// wrappingKeyMeta is the metadata key holding the sealed private key.
	wrappingKeyMeta = "transit.byok.wrapping_key"
	// ephemeralKeySize is the AES key the caller wraps its key with.
	ephemeralKeySize = 32
	// importKeySize is the only size a transit key may have.
	importKeySize = 32
)

// wrappingKeyAAD binds the sealed private key to its place.
func wrappingKeyAAD() []byte {
	return envelope.AAD("transit", WrappingKeyName, "rsa-4096-pkcs8")
}

// Meta keeps small metadata values; the store implements it.
type Meta interface {
	// Meta returns the value of key, or a *coffer.Error with ENOTFOUND.
	Meta(ctx context.Context, key string) (string, error)
	// AddMeta sets key to value only if it has none, and returns the value
	// it holds afterwards.
	AddMeta(ctx context.Context, key, value string) (string, error)
}

// WrappingKey is the answer of GET /v1/keys/wrapping_key.
type WrappingKey struct {
	// PublicKey is the RSA-4096 public key, PEM of a SubjectPublicKeyInfo.
	PublicKey string `json:"public_key"`
}

// ImportRequest is the body of an import.
type ImportRequest struct {
	// Ciphertext is base64 of RSA-OAEP(AES key) ‖ KWP(AES key, target key).
	Ciphertext string `json:"ciphertext"`
	// HashFunction is the RSA-OAEP hash: SHA1, SHA256 (the default),
	// SHA384 or SHA512.
	HashFunction string `json:"hash_function,omitempty"`
}

// wrapping is the cached wrapping key.
type wrapping struct {
	priv *rsa.PrivateKey
	pem  string
}

// WrappingKey returns the deployment's wrapping key (action admin on
// keys/wrapping_key, as creating a key), making it on first use.
func (s *Service) WrappingKey(ctx context.Context, c Caller) (WrappingKey, error) {
	if err := s.admitAdmin(c, "wrapping_key", WrappingKeyName); err != nil {
		return WrappingKey{}, err
	}
	w, err := s.wrappingKey(ctx)
	if err != nil {
		return WrappingKey{}, err
	}
	return WrappingKey{PublicKey: w.pem}, nil
}

// wrappingKey returns the cached wrapping key, loading it from the store,
// or making and storing it when the deployment has none. Two nodes making
// one at once both end with the one stored first.
func (s *Service) wrappingKey(ctx context.Context) (*wrapping, error) {
	s.byokMu.Lock()
	defer s.byokMu.Unlock()
	if s.byok != nil {
		return s.byok, nil
	}
	if s.c.Meta == nil {
		return nil, errors.New("transit: wrapping key: no metadata store configured")
	}
	sealed, err := s.c.Meta.Meta(ctx, wrappingKeyMeta)
	switch coffer.ErrorCode(err) {
	case "":
	case coffer.ENOTFOUND:
		if sealed, err = s.newWrappingKey(ctx); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("transit: wrapping key: %w", err)
	}
	w, err := s.openWrappingKey(ctx, sealed)
	if err != nil {
		return nil, err
	}
	s.byok = w
	return w, nil
}

// newWrappingKey makes an RSA key, seals it and stores it unless another
// node stored one first; it returns the sealed key the store holds.
func (s *Service) newWrappingKey(ctx context.Context) (string, error) {
	priv, err := rsa.GenerateKey(rand.Reader, wrappingKeyBits)
	if err != nil {
		return "", fmt.Errorf("transit: make wrapping key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("transit: make wrapping key: %w", err)
	}
	defer clear(der)
	env, err := s.c.Keys.Seal(ctx, wrappingKeyID, der, wrappingKeyAAD())
	if err != nil {
		return "", fmt.Errorf("transit: seal wrapping key: %w", err)
	}
	stored, err := s.c.Meta.AddMeta(ctx, wrappingKeyMeta, base64.StdEncoding.EncodeToString(env))
	if err != nil {
		return "", fmt.Errorf("transit: store wrapping key: %w", err)
	}
	return stored, nil
}

// openWrappingKey unseals a stored wrapping key.
func (s *Service) openWrappingKey(ctx context.Context, sealed string) (*wrapping, error) {
	env, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("transit: stored wrapping key is not base64: %w", err)
	}
	der, err := s.c.Keys.Open(ctx, wrappingKeyID, env, wrappingKeyAAD())
	if err != nil {
		return nil, fmt.Errorf("transit: open wrapping key: %w", err)
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("transit: parse wrapping key: %w", err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok || priv.N.BitLen() != wrappingKeyBits {
		return nil, errors.New("transit: stored wrapping key is not an RSA-4096 key")
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("transit: wrapping key: %w", err)
	}
	return &wrapping{priv: priv, pem: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))}, nil
}

// oaepHash returns the RSA-OAEP hash a hash_function names.
func oaepHash(name string) (func() hash.Hash, error) {
	switch strings.ToUpper(name) {
	case "", "SHA256", "SHA2-256":
		return sha256.New, nil
	case "SHA1":
		return sha1.New, nil
	case "SHA384", "SHA2-384":
		return sha512.New384, nil
	case "SHA512", "SHA2-512":
		return sha512.New, nil
	}
	return nil, coffer.Errorf(coffer.EINVALID, "hash_function must be SHA1, SHA256, SHA384 or SHA512")
}

// errNotAKey is every unwrap failure; it carries no detail.
var errNotAKey = errors.New("transit: import ciphertext does not unwrap")

// unwrapImport returns the key an import ciphertext carries:
// RSA-OAEP(priv, h, empty label) of a 32-byte AES key, then KWP of the key
// under it. Every failure is errNotAKey. When RSA-OAEP fails the key wrap
// is still attempted under a random key, so both failures take about the
// same work. The caller zeroes the result.
func unwrapImport(priv *rsa.PrivateKey, h func() hash.Hash, ct []byte) ([]byte, error) {
	n := priv.Size()
	if len(ct) <= n {
		return nil, errNotAKey
	}
	aesKey, oaepErr := rsa.DecryptOAEP(h(), nil, priv, ct[:n], nil)
	if oaepErr != nil || len(aesKey) != ephemeralKeySize {
		clear(aesKey)
		aesKey = make([]byte, ephemeralKeySize)
		if _, err := rand.Read(aesKey); err != nil {
			return nil, errNotAKey
		}
		oaepErr = errNotAKey
	}
	defer clear(aesKey)
	key, err := unwrapKWP(aesKey, ct[n:])
	if oaepErr != nil || err != nil {
		clear(key)
		return nil, errNotAKey
	}
	return key, nil
}

// unwrapKWP undoes AES key wrap with padding (RFC 5649) of wrapped under
// kek (AES-128 or AES-256), with Tink's implementation.
func unwrapKWP(kek, wrapped []byte) ([]byte, error) {
	w, err := subtle.NewKWP(kek)
	if err != nil {
		return nil, fmt.Errorf("transit: key wrap: %w", err)
	}
	out, err := w.Unwrap(wrapped)
	if err != nil {
		return nil, fmt.Errorf("transit: key unwrap: %w", err)
	}
	return out, nil
}

// Import creates the transit key name with the key the caller brought as
// its first version (action admin, as Create). A key of that name, live or
// deleted, is a conflict; a ciphertext that does not unwrap is one generic
// 422 (MsgNotAKey), and a key that is not 32 bytes another.
func (s *Service) Import(ctx context.Context, c Caller, name string, req ImportRequest) (KeyInfo, error) {
	if err := s.admitNew(c, "import", name); err != nil {
		return KeyInfo{}, err
	}
	h, ct, err := checkImport(req)
	if err != nil {
		return KeyInfo{}, err
	}
	return s.createKey(ctx, TransitKey{Name: name}, "import", func() (uint32, error) {
		material, err := s.unwrap(ctx, h, ct)
		if err != nil {
			return 0, err
		}
		defer clear(material)
		return s.c.Keys.Import(ctx, KeyID(name), material)
	})
}

// ImportVersion makes the key the caller brought the next version of the
// existing transit key name, the one that encrypts from now on (action
// admin, as Rotate). Older versions still decrypt down to
// MinDecryptionVersion. Refusals are those of Import; a key that does not
// exist is ENOTFOUND.
func (s *Service) ImportVersion(ctx context.Context, c Caller, name string, req ImportRequest) (KeyInfo, error) {
	if err := s.admitAdmin(c, "import_version", name); err != nil {
		return KeyInfo{}, err
	}
	h, ct, err := checkImport(req)
	if err != nil {
		return KeyInfo{}, err
	}
	if _, err := s.load(ctx, c, name); err != nil {
		return KeyInfo{}, err
	}
	material, err := s.unwrap(ctx, h, ct)
	if err != nil {
		return KeyInfo{}, err
	}
	k, err := s.addVersion(ctx, name, 0, false, material)
	if err != nil {
		return KeyInfo{}, err
	}
	return s.info(ctx, k)
}

// checkImport reads an import request's hash function and ciphertext.
func checkImport(req ImportRequest) (func() hash.Hash, []byte, error) {
	h, err := oaepHash(req.HashFunction)
	if err != nil {
		return nil, nil, err
	}
	ct, err := base64.StdEncoding.DecodeString(req.Ciphertext)
	if err != nil || len(ct) == 0 {
		return nil, nil, coffer.Errorf(coffer.EINVALID, "ciphertext must be standard base64 of the wrapped key")
	}
	return h, ct, nil
}

// unwrap returns the 32-byte key an import ciphertext carries, or the
// client error to answer. The caller zeroes it.
func (s *Service) unwrap(ctx context.Context, h func() hash.Hash, ct []byte) ([]byte, error) {
	w, err := s.wrappingKey(ctx)
	if err != nil {
		return nil, err
	}
	material, err := unwrapImport(w.priv, h, ct)
	if err != nil {
		return nil, coffer.Errorf(coffer.EINVALID, MsgNotAKey)
	}
	if len(material) != importKeySize {
		clear(material)
		return nil, coffer.Errorf(coffer.EINVALID, msgImportSize)
	}
	return material, nil
}
