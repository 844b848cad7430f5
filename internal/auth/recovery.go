package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/secret"
)

// Recovery codes: groups of four characters of lower-case Crockford
// base32, 16 characters (80 bits) each, "xxxx-xxxx-xxxx-xxxx".
//
// They are stored as HMAC-SHA256 under a keyring key ("hmac$vN$<hex>",
// N the key version), so a stolen database alone gives an attacker
// nothing to test guesses against. Codes made before (12 characters, 60
// bits, stored as unsalted "sha256$<hex>") still match until used; new
// enrolments make only the new kind.
const (
	recoveryGroups    = 4
	recoveryGroupLen  = 4
	recoveryCodeChars = recoveryGroups * recoveryGroupLen
	legacyRecoveryLen = 12
	maxRecoveryCodes  = 100

	recoveryMACPrefix = "hmac$v"
)

// NewRecoveryCodes makes n one-time recovery codes from r, formatted
// "xxxx-xxxx-xxxx-xxxx" (80 random bits each). Show them once; store only
// [RecoveryHash] of each, and remove a hash when its code is used.
func NewRecoveryCodes(r io.Reader, n int) ([]string, error) {
	if n < 1 || n > maxRecoveryCodes {
		return nil, fmt.Errorf("auth: recovery codes: want 1 to %d codes", maxRecoveryCodes)
	}
	if r == nil {
		return nil, errors.New("auth: recovery codes: no random source")
	}
	codes := make([]string, n)
	for i := range codes {
		raw, err := randomString(r, lower32, recoveryCodeChars)
		if err != nil {
			return nil, fmt.Errorf("auth: recovery codes: %w", err)
		}
		var b strings.Builder
		for g := 0; g < recoveryGroups; g++ {
			if g > 0 {
				b.WriteByte('-')
			}
			b.WriteString(raw[g*recoveryGroupLen : (g+1)*recoveryGroupLen])
		}
		codes[i] = b.String()
	}
	return codes, nil
}

// RecoveryHash is the stored form of a recovery code's MAC: mac is
// HMAC-SHA256 of [NormalizeRecoveryCode] of the code under version of the
// recovery key.
func RecoveryHash(version uint32, mac []byte) string {
	return recoveryMACPrefix + strconv.FormatUint(uint64(version), 10) + "$" + hex.EncodeToString(mac)
}

// RecoveryMAC computes the MAC of a normalised code under a version of
// the recovery key.
type RecoveryMAC func(version uint32, norm []byte) ([]byte, error)

// MatchRecoveryCode returns the index of the hash that code matches. The
// code is read leniently (case, spaces and dashes ignored; i and l read as
// 1, o as 0) and compared with every hash in constant time, so the time
// does not tell which one matched or whether any did: "hmac$vN$…" hashes
// with mac(N, code), legacy "sha256$…" ones with the SHA-256 of a 12
// character code. ok is false for no match or a code of neither length;
// err only when mac fails.
func MatchRecoveryCode(hashes []string, code secret.Password, mac RecoveryMAC) (index int, ok bool, err error) {
	norm, wellFormed := NormalizeRecoveryCode(code.Reveal())
	legacy := sha256.Sum256([]byte(norm))
	macs := map[uint32][]byte{}
	index, found := 0, 0
	for i, h := range hashes {
		var want, got []byte
		if v, sum, isMAC := parseRecoveryMAC(h); isMAC {
			if _, done := macs[v]; !done {
				if macs[v], err = mac(v, []byte(norm)); err != nil {
					return -1, false, fmt.Errorf("auth: recovery code: %w", err)
				}
			}
			want, got = sum, macs[v]
		} else if sum, valid := parseSHA256(h); valid && len(norm) == legacyRecoveryLen {
			want, got = sum[:], legacy[:]
		}
		eq := 0
		if len(want) > 0 {
			eq = subtle.ConstantTimeCompare(got, want)
		}
		first := eq & (found ^ 1) // 1 only for the first match
		index = subtle.ConstantTimeSelect(first, i, index)
		found |= eq
	}
	if found == 0 || !wellFormed {
		return -1, false, nil
	}
	return index, true, nil
}

// parseRecoveryMAC parses "hmac$vN$<64 lower-case hex>".
func parseRecoveryMAC(h string) (uint32, []byte, bool) {
	rest, ok := strings.CutPrefix(h, recoveryMACPrefix)
	if !ok {
		return 0, nil, false
	}
	vs, hexSum, ok := strings.Cut(rest, "$")
	v, err := strconv.ParseUint(vs, 10, 32)
	if !ok || err != nil || v == 0 || len(hexSum) != 2*sha256.Size || strings.ToLower(hexSum) != hexSum {
		return 0, nil, false
	}
	sum, err := hex.DecodeString(hexSum)
	if err != nil {
		return 0, nil, false
	}
	return uint32(v), sum, true
}

// NormalizeRecoveryCode maps a typed code to the form that is MACed (or,
// for a legacy code, hashed); ok is false unless it has 16 characters (or
// a legacy code's 12) of the alphabet once read leniently.
func NormalizeRecoveryCode(code string) (string, bool) {
	if len(code) > 64 {
		return "", false
	}
	b := make([]byte, 0, recoveryCodeChars)
	for i := 0; i < len(code); i++ {
		c := code[i]
		switch {
		case c == '-' || c == ' ':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		switch c {
		case 'i', 'l':
			c = '1'
		case 'o':
			c = '0'
		}
		if strings.IndexByte(lower32, c) < 0 {
			return "", false
		}
		b = append(b, c)
	}
	return string(b), len(b) == recoveryCodeChars || len(b) == legacyRecoveryLen
}
