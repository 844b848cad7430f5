package auth

import (
	"crypto/subtle"
	_ "embed" // the common-password list
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/cofferhq/coffer/internal/coffer"

	"github.com/cofferhq/coffer/internal/secret"
)

// Argon2id parameters for new hashes: the second recommended option of
// RFC 9106 §4 (64 MiB) with three passes and two lanes. Verification reads
// the parameters from each hash, so these may change; [NeedsRehash] says
// which stored hashes are behind.
const (
	Argon2Memory  = 64 * 1024 // KiB
	Argon2Time    = 3
	Argon2Threads = 2
	Argon2SaltLen = 16
	Argon2KeyLen  = 32
)

// Password policy limits, in characters (Unicode code points).
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// Bounds on parameters read back from a stored hash, so that a tampered or
// corrupt row cannot make one login take gigabytes or minutes.
const (
	maxArgon2Memory  = 1 << 21 // KiB: 2 GiB
	maxArgon2Time    = 16
	maxArgon2Threads = 16
	minSaltLen       = 8
	maxSaltLen       = 64
	minKeyLen        = 16
	maxKeyLen        = 64
)

// ErrMalformedHash is returned by [VerifyPassword] for a stored value that is
// not an argon2id PHC string this package can check.
var ErrMalformedHash = errors.New("auth: malformed password hash")

type argon2Params struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// HashPassword hashes pw with argon2id under a fresh 16-byte salt from r and
// returns the PHC string
// "$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>" (unpadded standard base64).
// It does not check the policy: call [CheckPasswordPolicy] first.
func HashPassword(r io.Reader, pw secret.Password) (string, error) {
	if r == nil {
		return "", errors.New("auth: hash password: no random source")
	}
	salt := make([]byte, Argon2SaltLen)
	if _, err := io.ReadFull(r, salt); err != nil {
		return "", fmt.Errorf("auth: hash password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw.Reveal()), salt, Argon2Time, Argon2Memory, Argon2Threads, Argon2KeyLen)
	return argon2Params{memory: Argon2Memory, time: Argon2Time, threads: Argon2Threads, salt: salt, key: key}.encode(), nil
}

// encode returns the PHC string of p.
func (p argon2Params) encode() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(p.salt), base64.RawStdEncoding.EncodeToString(p.key))
}

// VerifyPassword reports whether pw matches encoded, a PHC string made by
// [HashPassword] (with any parameters within sane bounds). The final
// comparison is constant time. It returns an error wrapping
// [ErrMalformedHash], and false, when encoded cannot be parsed.
func VerifyPassword(encoded string, pw secret.Password) (bool, error) {
	p, err := parsePHC(encoded)
	if err != nil {
		return false, err
	}
	keyLen := uint32(len(p.key)) // #nosec G115 -- parsePHC bounds the key at maxKeyLen (64) bytes
	key := argon2.IDKey([]byte(pw.Reveal()), p.salt, p.time, p.memory, p.threads, keyLen)
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

// NeedsRehash reports whether encoded should be replaced by a fresh
// [HashPassword] at the next successful login: it is malformed or was made
// with other parameters than the current ones.
func NeedsRehash(encoded string) bool {
	p, err := parsePHC(encoded)
	if err != nil {
		return true
	}
	return p.memory != Argon2Memory || p.time != Argon2Time || p.threads != Argon2Threads ||
		len(p.salt) != Argon2SaltLen || len(p.key) != Argon2KeyLen
}

// DummyVerify does the work of one [VerifyPassword] with the current
// parameters and throws the result away. Call it when the user does not
// exist, so that the answer takes as long as for a wrong password.
func DummyVerify() {
	salt := []byte("coffer-dummy-salt")
	_ = argon2.IDKey([]byte("coffer-dummy-password"), salt[:Argon2SaltLen],
		Argon2Time, Argon2Memory, Argon2Threads, Argon2KeyLen)
}

// parsePHC parses "$argon2id$v=19$m=M,t=T,p=P$salt$hash" strictly.
func parsePHC(s string) (argon2Params, error) {
	var p argon2Params
	fail := func(why string) (argon2Params, error) {
		return argon2Params{}, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	if strings.ContainsAny(s, "\r\n") {
		return fail("line break") // base64 decoding would skip it
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return fail("want 5 fields")
	}
	if parts[1] != "argon2id" {
		return fail("not argon2id")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return fail("unsupported version")
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return fail("want m, t and p")
	}
	m, ok1 := phcUint(params[0], "m=", maxArgon2Memory)
	t, ok2 := phcUint(params[1], "t=", maxArgon2Time)
	th, ok3 := phcUint(params[2], "p=", maxArgon2Threads)
	if !ok1 || !ok2 || !ok3 || t < 1 || th < 1 || m < 8*th {
		return fail("parameters out of range")
	}
	p.memory, p.time, p.threads = uint32(m), uint32(t), uint8(th) // #nosec G115 -- phcUint bounded them: m ≤ maxArgon2Memory (2^21), t ≤ maxArgon2Time, th ≤ maxArgon2Threads (16)
	var err error
	if p.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil || len(p.salt) < minSaltLen || len(p.salt) > maxSaltLen {
		return fail("bad salt")
	}
	if p.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil || len(p.key) < minKeyLen || len(p.key) > maxKeyLen {
		return fail("bad hash")
	}
	return p, nil
}

// phcUint parses "name=decimal" with no sign, no leading zeros and a value
// at most max.
func phcUint(s, name string, max uint64) (uint64, bool) {
	d, ok := strings.CutPrefix(s, name)
	if !ok || d == "" || len(d) > 10 || (len(d) > 1 && d[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(d, 10, 64)
	if err != nil || v > max {
		return 0, false
	}
	return v, true
}

//go:embed testdata/common_passwords.txt
var commonPasswords string

// CheckPasswordPolicy returns nil when pw may be used as username's
// password, or a *coffer.Error with code EINVALID that says what is wrong
// without repeating pw. The rules: valid UTF-8; 12 to 256 characters; not a
// single repeated character; not equal to the username and, for usernames
// of 3 characters or more, not containing it (case-insensitively); not one
// of a list of the most common passwords (case-insensitively).
func CheckPasswordPolicy(password secret.Password, username string) error {
	pw := password.Reveal()
	invalid := func(msg string) error { return coffer.Errorf(coffer.EINVALID, "%s", msg) }
	if !utf8.ValidString(pw) {
		return invalid("password must be valid UTF-8")
	}
	n := utf8.RuneCountInString(pw)
	switch {
	case n < MinPasswordLen:
		return invalid(fmt.Sprintf("password must be at least %d characters", MinPasswordLen))
	case n > MaxPasswordLen:
		return invalid(fmt.Sprintf("password must be at most %d characters", MaxPasswordLen))
	}
	if r, _ := utf8.DecodeRuneInString(pw); strings.Count(pw, string(r)) == n {
		return invalid("password must not be one character repeated")
	}
	lpw := strings.ToLower(pw)
	if u := strings.ToLower(strings.TrimSpace(username)); u != "" {
		if lpw == u || (utf8.RuneCountInString(u) >= 3 && strings.Contains(lpw, u)) {
			return invalid("password must not contain the username")
		}
	}
	if isCommonPassword(lpw) {
		return invalid("password is too common; choose another")
	}
	return nil
}

// isCommonPassword reports whether the lower-cased password lpw is in the
// embedded list (one lower-case password a line; # starts a comment).
func isCommonPassword(lpw string) bool {
	for line := range strings.Lines(commonPasswords) {
		line = strings.TrimRight(line, "\r\n")
		if line == lpw && line != "" && line[0] != '#' {
			return true
		}
	}
	return false
}
