package transit

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// ciphertextPrefix starts every transit ciphertext of Coffer's own API;
// the key version follows.
const ciphertextPrefix = "coffer:v"

// vaultPrefix starts the same ciphertexts on the Vault-compatible surface
// (internal/vaultcompat), which shows them as Vault's transit engine does.
const vaultPrefix = "vault:v"

// maxVersionDigits is the length of the largest uint32 in decimal.
const maxVersionDigits = 10

// b64 is strict standard base64 with padding: it refuses non-zero
// trailing bits, so one envelope has exactly one text.
var b64 = base64.StdEncoding.Strict()

// Errors of ParseCiphertext and FormatCiphertext.
var (
	// ErrMalformedCiphertext: the text is not coffer:vN:BASE64 of an
	// envelope (a client error, reported as such).
	ErrMalformedCiphertext = errors.New("transit: malformed ciphertext")
	// ErrVersionMismatch: the version in the prefix is not the one in the
	// envelope header; the ciphertext was altered.
	ErrVersionMismatch = errors.New("transit: ciphertext version does not match its envelope")
)

// FormatCiphertext returns the ciphertext text of env: coffer:vN:BASE64,
// N being the key version in env's header. It fails with
// ErrMalformedCiphertext for bytes that are not an envelope.
func FormatCiphertext(env []byte) (string, error) {
	v, err := envelope.KeyVersion(env)
	if err != nil || v == 0 {
		return "", ErrMalformedCiphertext
	}
	var b strings.Builder
	b.Grow(len(ciphertextPrefix) + maxVersionDigits + 1 + b64.EncodedLen(len(env)))
	b.WriteString(ciphertextPrefix)
	b.WriteString(strconv.FormatUint(uint64(v), 10))
	b.WriteByte(':')
	b.WriteString(b64.EncodeToString(env))
	return b.String(), nil
}

// VaultCiphertext returns the text the Vault-compatible surface shows for a
// ciphertext FormatCiphertext wrote: the same envelope after vault:vN:
// instead of coffer:vN:. Any other text is returned as it is.
func VaultCiphertext(ct string) string {
	if rest, ok := strings.CutPrefix(ct, ciphertextPrefix); ok {
		return vaultPrefix + rest
	}
	return ct
}

// ParseCiphertext returns the key version and the envelope of a
// ciphertext text. It accepts exactly the texts FormatCiphertext writes,
// and the same texts under vault:vN: (VaultCiphertext), so that a
// ciphertext decrypts on both surfaces:
// the version has no sign, no leading zero and is at least 1, the base64 is
// standard, padded and canonical, and the envelope is at least
// envelope.Overhead bytes of a known format. It returns
// ErrMalformedCiphertext for any other text, and ErrVersionMismatch when
// the prefix and the envelope header name different versions. Nothing it
// returns is authenticated yet: only opening the envelope proves it.
func ParseCiphertext(s string) (uint32, []byte, error) {
	rest, ok := strings.CutPrefix(s, ciphertextPrefix)
	if !ok {
		if rest, ok = strings.CutPrefix(s, vaultPrefix); !ok {
			return 0, nil, ErrMalformedCiphertext
		}
	}
	digits, body, ok := strings.Cut(rest, ":")
	if !ok || len(digits) == 0 || len(digits) > maxVersionDigits || digits[0] == '0' {
		return 0, nil, ErrMalformedCiphertext
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, nil, ErrMalformedCiphertext
		}
	}
	v, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return 0, nil, ErrMalformedCiphertext
	}
	// The decoder skips \r and \n, which would let one envelope have many
	// texts.
	if strings.ContainsAny(body, "\r\n") {
		return 0, nil, ErrMalformedCiphertext
	}
	env, err := b64.DecodeString(body)
	if err != nil {
		return 0, nil, ErrMalformedCiphertext
	}
	hv, err := envelope.KeyVersion(env)
	if err != nil {
		return 0, nil, ErrMalformedCiphertext
	}
	if hv != uint32(v) {
		return 0, nil, ErrVersionMismatch
	}
	return hv, env, nil
}

// vaultSealedMin is the shortest value Vault's transit engine seals for an
// aes256-gcm96 key: a 12-byte nonce and a 16-byte tag.
const vaultSealedMin = 12 + 16

// ParseVaultNative returns the key version and the sealed bytes of a
// ciphertext HashiCorp Vault's transit engine made for an aes256-gcm96 key
// that is neither derived nor convergent: vault:vN:BASE64 of a 12-byte
// nonce, the AES-256-GCM ciphertext and its tag, under version N's key
// itself. The version and the base64 are held to ParseCiphertext's rules
// (Vault writes them so). ok is false for any other text. Nothing it
// returns is authenticated yet; a Coffer ciphertext under vault:vN: also
// parses here, and only opening tells them apart.
func ParseVaultNative(s string) (version uint32, sealed []byte, ok bool) {
	rest, found := strings.CutPrefix(s, vaultPrefix)
	if !found {
		return 0, nil, false
	}
	digits, body, found := strings.Cut(rest, ":")
	if !found || len(digits) == 0 || len(digits) > maxVersionDigits || digits[0] == '0' ||
		strings.ContainsAny(body, "\r\n") {
		return 0, nil, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, nil, false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return 0, nil, false
	}
	b, err := b64.DecodeString(body)
	if err != nil || len(b) < vaultSealedMin {
		return 0, nil, false
	}
	return uint32(v), b, true
}
