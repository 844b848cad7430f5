// Package transittest holds what the transit tests need on the client's
// side, written apart from the transit package so that they check it
// rather than repeat it: the bring-your-own-key wrap a client performs,
// and the decryption of a transit ciphertext from the raw key alone.
//
// It is test support: the product never imports it, and it never sees a
// key of a running deployment.
package transittest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// ParsePublicKey parses the PEM of GET /v1/keys/wrapping_key.
func ParsePublicKey(pemText string) (*rsa.PublicKey, error) {
	b, _ := pem.Decode([]byte(pemText))
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("transittest: not a PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("transittest: %w", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("transittest: the wrapping key is a %T, not RSA", k)
	}
	return pub, nil
}

// Wrap does what a client of the BYOK import does: RSA-OAEP (with h, empty
// label) of a fresh AES-256 key under pub, followed by the RFC 5649 key
// wrap of key under that AES key.
func Wrap(pub *rsa.PublicKey, h hash.Hash, key []byte) ([]byte, error) {
	ephemeral := make([]byte, 32)
	if _, err := rand.Read(ephemeral); err != nil {
		return nil, err
	}
	head, err := rsa.EncryptOAEP(h, rand.Reader, pub, ephemeral, nil)
	if err != nil {
		return nil, err
	}
	kwp, err := subtle.NewKWP(ephemeral)
	if err != nil {
		return nil, err
	}
	tail, err := kwp.Wrap(key)
	if err != nil {
		return nil, err
	}
	return append(head, tail...), nil
}

// Open decrypts a transit ciphertext of key name with nothing but the raw
// key, as internal/transit/ciphertext.go and the keyring lay it out:
// "coffer:vN:" + base64(0x01 ‖ N as 4 bytes big endian ‖ 12-byte nonce ‖
// AES-256-GCM ciphertext and tag), under the GCM key
// HKDF-Expand(SHA-256, key, "coffer/keyring/v1/aead", 32), with additional
// data the 5 header bytes ‖ "transit", the key name and the context
// (bound), each prefixed by its length as a uvarint.
func Open(key []byte, name, ct string, bound []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(ct, "coffer:v")
	if !ok {
		return nil, errors.New("transittest: no coffer:v prefix")
	}
	_, body, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, errors.New("transittest: no version")
	}
	env, err := base64.StdEncoding.DecodeString(body)
	if err != nil || len(env) < 5+12+16 || env[0] != 0x01 {
		return nil, fmt.Errorf("transittest: not an envelope (%v)", err)
	}
	gcmKey, err := hkdf.Expand(sha256.New, key, "coffer/keyring/v1/aead", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(gcmKey)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	ad := bytes.Clone(env[:5])
	for _, part := range []string{"transit", name, string(bound)} {
		ad = binary.AppendUvarint(ad, uint64(len(part)))
		ad = append(ad, part...)
	}
	return gcm.Open(nil, env[5:17], env[17:], ad)
}

// VaultSeal makes the ciphertext HashiCorp Vault's transit engine makes
// for plaintext under version version of an aes256-gcm96 key that is
// neither derived nor convergent, written from Vault's layout and not from
// Coffer's code: "vault:vN:" + base64(12-byte random nonce ‖ AES-256-GCM
// ciphertext and tag under key itself, no additional data).
func VaultSeal(key []byte, version uint32, plaintext []byte) (string, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return fmt.Sprintf("vault:v%d:%s", version, base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, plaintext, nil))), nil
}
