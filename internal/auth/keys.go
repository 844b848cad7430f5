package auth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultSigningKeyLifetime is the NotAfter that [GenerateSigningKey] gives a
// new key: how long it may sign and verify unless the caller sets its own.
const DefaultSigningKeyLifetime = 90 * 24 * time.Hour

// SigningKey is an Ed25519 key that signs access tokens. Its String and
// GoString never show the private key.
type SigningKey struct {
	// ID is the JWS "kid": the RFC 7638 JWK thumbprint (SHA-256, base64url)
	// of the public key for keys made by GenerateSigningKey.
	ID string
	// Private is the Ed25519 private key. Never log it.
	Private ed25519.PrivateKey
	// NotAfter is when the key stops signing, verifying and being published
	// in the JWKS. The zero time means no limit.
	NotAfter time.Time
}

// String describes the key by its id only.
func (k SigningKey) String() string { return "SigningKey(" + k.ID + ")" }

// GoString describes the key by its id only, for %#v.
func (k SigningKey) GoString() string { return k.String() }

// Format prints the key by its id only whatever the verb, so that the
// private key cannot reach a log through %v, %+v or %x.
func (k SigningKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// GenerateSigningKey makes a new Ed25519 signing key from a 32-byte seed read
// from r, with the RFC 7638 thumbprint as its id and NotAfter set to now plus
// [DefaultSigningKeyLifetime].
func GenerateSigningKey(r io.Reader, now time.Time) (SigningKey, error) {
	if r == nil {
		return SigningKey{}, fmt.Errorf("auth: new signing key: no random source")
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return SigningKey{}, fmt.Errorf("auth: new signing key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	clear(seed)
	kid, err := KeyID(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return SigningKey{}, fmt.Errorf("auth: new signing key: %w", err)
	}
	return SigningKey{ID: kid, Private: priv, NotAfter: now.Add(DefaultSigningKeyLifetime)}, nil
}

// KeyID returns the RFC 7638 JWK thumbprint of an Ed25519 public key,
// SHA-256 and base64url without padding: the kid GenerateSigningKey uses.
func KeyID(pub ed25519.PublicKey) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("auth: key id: not an Ed25519 public key")
	}
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("auth: key id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// valid reports whether k can be used: an id, and a well-formed Ed25519
// private key whose public half matches its seed.
func (k SigningKey) valid() bool {
	if k.ID == "" || len(k.Private) != ed25519.PrivateKeySize {
		return false
	}
	again := ed25519.NewKeyFromSeed(k.Private.Seed())
	return bytes.Equal(again, k.Private)
}
