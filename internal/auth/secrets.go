package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cofferhq/coffer/internal/secret"
)

const (
	// ClientSecretPrefix starts every client secret, so that secret scanners
	// and log redactors can recognise one.
	ClientSecretPrefix = "cs_"
	// ClientIDPrefix starts every client id.
	ClientIDPrefix = "cl_"

	base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// lower32 is Crockford's base32 alphabet in lower case: no i, l, o, u, so
	// that ids and codes read aloud or typed by hand are not misread.
	lower32 = "0123456789abcdefghjkmnpqrstvwxyz"

	// clientSecretChars base62 characters carry 43·log2(62) ≈ 256.0 bits.
	clientSecretChars = 43
	// clientIDChars base32 characters carry 100 bits.
	clientIDChars = 20

	sha256Prefix = "sha256$"
)

// NewClientSecret returns a new client secret: "cs_" followed by 43 base62
// characters drawn uniformly from r (256 bits). Show it once and keep only
// [HashClientSecret] of it.
func NewClientSecret(r io.Reader) (string, error) {
	s, err := randomString(r, base62, clientSecretChars)
	if err != nil {
		return "", fmt.Errorf("auth: new client secret: %w", err)
	}
	return ClientSecretPrefix + s, nil
}

// NewEnrolmentCode returns a one-time MFA enrolment code, "mfa_" and 32
// lower-case base32 characters from r (160 bits), and the hash to store
// ([EnrolmentCodeHash]). Show the code once.
func NewEnrolmentCode(r io.Reader) (code, hash string, err error) {
	s, err := randomString(r, lower32, 32)
	if err != nil {
		return "", "", fmt.Errorf("auth: new enrolment code: %w", err)
	}
	code = "mfa_" + s
	return code, EnrolmentCodeHash(code), nil
}

// EnrolmentCodeHash returns "sha256$" and the hex SHA-256 of code: as for
// client secrets, a fast hash is enough for 160 random bits.
func EnrolmentCodeHash(code string) string { return sha256Hash(code) }

// NewClientID returns a new client id: "cl_" followed by 20 lower-case
// base32 characters drawn uniformly from r (100 bits).
func NewClientID(r io.Reader) (string, error) {
	s, err := randomString(r, lower32, clientIDChars)
	if err != nil {
		return "", fmt.Errorf("auth: new client id: %w", err)
	}
	return ClientIDPrefix + s, nil
}

// HashClientSecret returns "sha256$" and the hex SHA-256 of secret. A fast
// unsalted hash is enough here because client secrets carry 256 random
// bits: there is nothing to guess. Never use it for passwords.
func HashClientSecret(s secret.Password) string {
	return sha256Hash(s.Reveal())
}

// VerifyClientSecret reports whether secret matches hash, a value made by
// [HashClientSecret]. The comparison takes the same time wherever the
// digests differ; a malformed hash matches nothing.
func VerifyClientSecret(hash string, s secret.Password) bool {
	return sha256Match(hash, s.Reveal())
}

func sha256Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return sha256Prefix + hex.EncodeToString(sum[:])
}

// sha256Match compares the SHA-256 of s with a "sha256$<hex>" hash in
// constant time with respect to the digest.
func sha256Match(hash, s string) bool {
	want, ok := parseSHA256(hash)
	got := sha256.Sum256([]byte(s))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1 && ok
}

func parseSHA256(hash string) (sum [sha256.Size]byte, ok bool) {
	h, found := strings.CutPrefix(hash, sha256Prefix)
	if !found || len(h) != 2*sha256.Size {
		return sum, false
	}
	for i := 0; i < len(h); i++ {
		if !('0' <= h[i] && h[i] <= '9' || 'a' <= h[i] && h[i] <= 'f') {
			return sum, false // lower-case hex only: one hash, one spelling
		}
	}
	if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
		return sum, false
	}
	return sum, true
}

var errShortRead = errors.New("random source returned too few bytes")

// randomString returns n characters drawn uniformly from alphabet (at most
// 256 characters) using bytes from r, by rejection sampling.
func randomString(r io.Reader, alphabet string, n int) (string, error) {
	if r == nil {
		return "", errors.New("no random source")
	}
	limit := 256 - 256%len(alphabet) // bytes ≥ limit would bias the result
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2+8)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("%w: %w", errShortRead, err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, alphabet[int(b)%len(alphabet)])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}
