package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Recovery codes: groups of four characters of lower-case Crockford base32,
// 12 characters (60 bits) each, "xxxx-xxxx-xxxx".
const (
	recoveryGroups    = 3
	recoveryGroupLen  = 4
	recoveryCodeChars = recoveryGroups * recoveryGroupLen
	maxRecoveryCodes  = 100
)

// NewRecoveryCodes makes n one-time recovery codes from r, formatted
// "xxxx-xxxx-xxxx" (60 random bits each), and their hashes in the same
// order. Show the codes once; store only the hashes, and remove a hash when
// its code is used.
func NewRecoveryCodes(r io.Reader, n int) (codes []string, hashes []string, err error) {
	if n < 1 || n > maxRecoveryCodes {
		return nil, nil, fmt.Errorf("auth: recovery codes: want 1 to %d codes", maxRecoveryCodes)
	}
	if r == nil {
		return nil, nil, errors.New("auth: recovery codes: no random source")
	}
	codes, hashes = make([]string, n), make([]string, n)
	for i := range codes {
		raw, err := randomString(r, lower32, recoveryCodeChars)
		if err != nil {
			return nil, nil, fmt.Errorf("auth: recovery codes: %w", err)
		}
		var b strings.Builder
		for g := 0; g < recoveryGroups; g++ {
			if g > 0 {
				b.WriteByte('-')
			}
			b.WriteString(raw[g*recoveryGroupLen : (g+1)*recoveryGroupLen])
		}
		codes[i], hashes[i] = b.String(), sha256Hash(raw)
	}
	return codes, hashes, nil
}

// MatchRecoveryCode returns the index of the hash that code matches. The
// code is read leniently (case, spaces and dashes ignored; i and l read as
// 1, o as 0) and compared with every hash in constant time, so the time
// does not tell which one matched or whether any did. ok is false for no
// match or a code of the wrong length.
func MatchRecoveryCode(hashes []string, code string) (index int, ok bool) {
	norm, wellFormed := normalizeRecoveryCode(code)
	got := sha256.Sum256([]byte(norm))
	index, found := 0, 0
	for i, h := range hashes {
		want, valid := parseSHA256(h)
		eq := subtle.ConstantTimeCompare(got[:], want[:])
		if !valid {
			eq = 0
		}
		first := eq & (found ^ 1) // 1 only for the first match
		index = subtle.ConstantTimeSelect(first, i, index)
		found |= eq
	}
	if found == 0 || !wellFormed {
		return -1, false
	}
	return index, true
}

// normalizeRecoveryCode maps a typed code to the form that was hashed.
func normalizeRecoveryCode(code string) (string, bool) {
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
	return string(b), len(b) == recoveryCodeChars
}
