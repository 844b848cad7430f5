package auth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer/internal/secret"
)

// TOTP parameters (RFC 6238 defaults, what authenticator apps expect).
const (
	TOTPPeriod     = 30 // seconds
	TOTPDigits     = 6
	TOTPSecretSize = 20 // bytes: 160 bits, the HMAC-SHA1 block-friendly size RFC 4226 recommends
	// TOTPSkew is how many steps either side of the current one are accepted.
	TOTPSkew = 1
)

var (
	// ErrBadCode is returned by ValidateTOTP for a code that matches none of
	// the accepted steps, or is not six digits.
	ErrBadCode = errors.New("auth: wrong one-time code")
	// ErrCodeReplayed is returned by ValidateTOTP for a correct code of a
	// step at or before the last one used: a code works once.
	ErrCodeReplayed = errors.New("auth: one-time code already used")
	// ErrBadTOTPSecret is returned by ValidateTOTP for a stored secret that
	// is not base32.
	ErrBadTOTPSecret = errors.New("auth: malformed TOTP secret")
)

// NewTOTP makes a TOTP secret (160 bits from r) for account at issuer and
// returns it base32-encoded (unpadded) together with its otpauth:// URL
// for authenticator apps (SHA1, 6 digits, 30 s). Keep the secret sealed:
// whoever has it can make codes.
func NewTOTP(r io.Reader, issuer, account string) (secret, otpauthURL string, err error) {
	if r == nil {
		return "", "", errors.New("auth: new TOTP: no random source")
	}
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: account, Period: TOTPPeriod, SecretSize: TOTPSecretSize,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1, Rand: r,
	})
	if err != nil {
		return "", "", fmt.Errorf("auth: new TOTP: %w", err)
	}
	return k.Secret(), k.URL(), nil
}

// TOTPStep returns the RFC 6238 time step of t (30-second periods since the
// Unix epoch).
func TOTPStep(t time.Time) int64 {
	s := t.Unix()
	if s < 0 {
		return (s - TOTPPeriod + 1) / TOTPPeriod // floor for times before 1970
	}
	return s / TOTPPeriod
}

// ValidateTOTP checks a six-digit code against secret at now. It accepts
// the codes of the current step and of one step either side, and returns
// the step the code belongs to: store it as the new lastUsedStep. A correct
// code for a step ≤ lastUsedStep is refused with ErrCodeReplayed; any other
// mismatch with ErrBadCode. Every accepted step is computed and compared
// in constant time, whether or not an earlier one matched.
func ValidateTOTP(totpSecret string, totpCode secret.Password, now time.Time, lastUsedStep int64) (step int64, err error) {
	code := totpCode.Reveal()
	wellFormed := len(code) == TOTPDigits
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			wellFormed = false
		}
	}
	cur := TOTPStep(now)
	var matched, fresh int64 = -1, -1
	for s := cur - TOTPSkew; s <= cur+TOTPSkew; s++ {
		if s < 0 {
			continue
		}
		want, err := hotp.GenerateCodeCustom(totpSecret, uint64(s), hotp.ValidateOpts{
			Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil {
			return 0, ErrBadTOTPSecret
		}
		ok := subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1
		if ok {
			matched = s
			if s > lastUsedStep {
				fresh = s
			}
		}
	}
	switch {
	case !wellFormed || matched < 0:
		return 0, ErrBadCode
	case fresh < 0:
		return 0, ErrCodeReplayed
	}
	return fresh, nil
}
