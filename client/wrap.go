package client

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// WrapKey wraps key (32 bytes) for the wrapping key wk as the server's
// bring-your-own-key imports take it (ImportKey, ImportKeyVersion,
// ImportVaultKey, hash function SHA256): RSA-OAEP with SHA-256 and an
// empty label of a fresh AES-256 key under the wrapping key, followed by
// the RFC 5649 key wrap of key under that AES key. The fresh key is zeroed
// before WrapKey returns; key is left to the caller.
func WrapKey(wk *WrappingKey, key []byte) ([]byte, error) {
	if wk == nil {
		return nil, errors.New("client: wrap key: no wrapping key")
	}
	b, _ := pem.Decode([]byte(wk.PublicKey))
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("client: wrap key: the wrapping key is not a PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("client: wrap key: %w", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("client: wrap key: the wrapping key is a %T, not RSA", k)
	}
	ephemeral := make([]byte, 32)
	defer clear(ephemeral)
	if _, err := rand.Read(ephemeral); err != nil {
		return nil, fmt.Errorf("client: wrap key: %w", err)
	}
	head, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, ephemeral, nil)
	if err != nil {
		return nil, fmt.Errorf("client: wrap key: %w", err)
	}
	kwp, err := subtle.NewKWP(ephemeral)
	if err != nil {
		return nil, fmt.Errorf("client: wrap key: %w", err)
	}
	tail, err := kwp.Wrap(key)
	if err != nil {
		return nil, fmt.Errorf("client: wrap key: %w", err)
	}
	return append(head, tail...), nil
}
