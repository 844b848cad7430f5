package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cofferhq/coffer/internal/secret"
)

// Sizes of the envelope format.
const (
	// FormatVersion is the first byte of every envelope this package writes.
	FormatVersion byte = 0x01
	// KeySize is the only key length New accepts: AES-256.
	KeySize = 32
	// HeaderSize is the format version byte plus the key version.
	HeaderSize = 1 + 4
	// NonceSize is the GCM nonce length.
	NonceSize = 12
	// TagSize is the GCM authentication tag length.
	TagSize = 16
	// Overhead is how many bytes an envelope adds to its plaintext; it is
	// also the length of the shortest envelope (that of an empty plaintext).
	Overhead = HeaderSize + NonceSize + TagSize
)

// ErrDecrypt is the one error Open returns for every envelope it cannot
// open: wrong key, wrong additional data, tampered, truncated or malformed.
// It deliberately says nothing more.
var ErrDecrypt = errors.New("envelope: message authentication failed")

// ErrMalformed is returned by KeyVersion when the bytes cannot be an
// envelope: too short or of an unknown format version.
var ErrMalformed = errors.New("envelope: malformed envelope")

// ErrKeySize is returned by New for a key that is not 32 bytes long.
var ErrKeySize = errors.New("envelope: key must be 32 bytes (AES-256)")

// AEAD seals and opens envelopes under one key version. Build it once per
// key version and reuse it: it holds the expanded AES key schedule, so the
// hot path does no key setup. An AEAD is safe for concurrent use.
type AEAD struct {
	gcm     cipher.AEAD
	version uint32
	header  [HeaderSize]byte
}

// New returns an AEAD for key, which must be 32 bytes, whose envelopes carry
// version. The AEAD keeps its own copy of the key schedule; the caller may
// zero key afterwards.
func New(key secret.Key, version uint32) (*AEAD, error) {
	if key.Len() != KeySize {
		return nil, ErrKeySize
	}
	kb := key.Bytes()
	defer clear(kb)
	block, err := aes.NewCipher(kb)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	a := &AEAD{gcm: gcm, version: version}
	a.header[0] = FormatVersion
	binary.BigEndian.PutUint32(a.header[1:], version)
	return a, nil
}

// Version returns the key version this AEAD writes into its envelopes and
// accepts in the envelopes it opens.
func (a *AEAD) Version() uint32 { return a.version }

// Seal encrypts plaintext bound to aad and returns a new envelope. The nonce
// is read from rand, which must be crypto/rand.Reader outside tests and safe
// for concurrent use if the AEAD is shared. Seal fails only if rand does.
func (a *AEAD) Seal(rand io.Reader, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, HeaderSize+NonceSize, HeaderSize+NonceSize+len(plaintext)+TagSize)
	copy(out, a.header[:])
	nonce := out[HeaderSize:]
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("envelope: read nonce: %w", err)
	}
	ad := a.additionalData(aad)
	return a.gcm.Seal(out, nonce, plaintext, ad), nil
}

// Open authenticates and decrypts env bound to aad and returns the
// plaintext in a new slice. Every failure returns ErrDecrypt and nothing
// else, including an envelope of another key version.
func (a *AEAD) Open(env, aad []byte) ([]byte, error) {
	if len(env) < Overhead || [HeaderSize]byte(env[:HeaderSize]) != a.header {
		return nil, ErrDecrypt
	}
	nonce := env[HeaderSize : HeaderSize+NonceSize]
	pt, err := a.gcm.Open(nil, nonce, env[HeaderSize+NonceSize:], a.additionalData(aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// additionalData returns header || aad, the GCM additional data.
func (a *AEAD) additionalData(aad []byte) []byte {
	ad := make([]byte, HeaderSize+len(aad))
	copy(ad, a.header[:])
	copy(ad[HeaderSize:], aad)
	return ad
}

// KeyVersion returns the key version named in env's header, so a caller can
// pick the AEAD to open it with. It returns ErrMalformed when env is shorter
// than any envelope or of an unknown format. A version read here is not yet
// authenticated: only Open proves it.
func KeyVersion(env []byte) (uint32, error) {
	if len(env) < Overhead || env[0] != FormatVersion {
		return 0, ErrMalformed
	}
	return binary.BigEndian.Uint32(env[1:HeaderSize]), nil
}

// AAD encodes parts as additional data without ambiguity: each part is
// prefixed by its length (uvarint), so AAD("a|b", "c") and AAD("a", "b|c")
// differ, as do AAD() and AAD(""). Callers bind a value to its place, for
// example AAD(collection, recordID, field, strconv.Itoa(version)).
func AAD(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}
