package auth

import (
	"encoding/base32"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer/internal/secret"
)

// rfcSecret is RFC 6238's SHA-1 seed, base32 as NewTOTP stores secrets.
var rfcSecret = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte("12345678901234567890"))

// TestRFC6238Vectors checks the generator under ValidateTOTP against the
// SHA-1 rows of RFC 6238 Appendix B (8 digits), and ValidateTOTP itself
// against the same rows truncated to our 6 digits.
func TestRFC6238Vectors(t *testing.T) {
	var v struct {
		SecretASCII string `json:"secret_ascii"`
		Digits      int    `json:"digits"`
		Vectors     []struct {
			Time int64  `json:"time"`
			Step int64  `json:"step"`
			TOTP string `json:"totp"`
		} `json:"vectors"`
	}
	readJSON(t, "testdata/rfc6238_sha1.json", &v)
	if v.SecretASCII != "12345678901234567890" || v.Digits != 8 || len(v.Vectors) != 6 {
		t.Fatalf("unexpected vector file: %+v", v)
	}
	for _, tc := range v.Vectors {
		t.Run(strconv.FormatInt(tc.Time, 10), func(t *testing.T) {
			at := time.Unix(tc.Time, 0)
			got, err := totp.GenerateCodeCustom(rfcSecret, at, totp.ValidateOpts{
				Period: TOTPPeriod, Digits: otp.DigitsEight, Algorithm: otp.AlgorithmSHA1,
			})
			if err != nil || got != tc.TOTP {
				t.Fatalf("GenerateCodeCustom = %q, %v; want %q", got, err, tc.TOTP)
			}
			if s := TOTPStep(at); s != tc.Step {
				t.Fatalf("TOTPStep = %d, want %d", s, tc.Step)
			}
			step, err := ValidateTOTP(rfcSecret, secret.NewPassword(tc.TOTP[2:]), at, 0)
			if err != nil || step != tc.Step {
				t.Fatalf("ValidateTOTP(6-digit) = %d, %v; want step %d", step, err, tc.Step)
			}
		})
	}
}

func TestValidateTOTP(t *testing.T) {
	now := time.Unix(1111111111, 0) // step 37037037
	cur := TOTPStep(now)
	code := func(step int64) string {
		c, err := totp.GenerateCodeCustom(rfcSecret, time.Unix(step*TOTPPeriod, 0), totp.ValidateOpts{
			Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		name     string
		secret   string
		code     string
		lastUsed int64
		wantStep int64
		wantErr  error
	}{
		{"ok/current step", rfcSecret, code(cur), 0, cur, nil},
		{"ok/previous step (clock skew)", rfcSecret, code(cur - 1), 0, cur - 1, nil},
		{"ok/next step (clock skew)", rfcSecret, code(cur + 1), 0, cur + 1, nil},
		{"ok/lower-case secret", "gezdgnbvgy3tqojqgezdgnbvgy3tqojq", code(cur), 0, cur, nil},
		{"ok/next step after the current one was used", rfcSecret, code(cur + 1), cur, cur + 1, nil},
		{"fail/two steps back", rfcSecret, code(cur - 2), 0, 0, ErrBadCode},
		{"fail/two steps ahead", rfcSecret, code(cur + 2), 0, 0, ErrBadCode},
		{"fail/replay of the same step", rfcSecret, code(cur), cur, 0, ErrCodeReplayed},
		{"fail/replay of an older step", rfcSecret, code(cur - 1), cur, 0, ErrCodeReplayed},
		{"fail/wrong code", rfcSecret, "000000", 0, 0, ErrBadCode},
		{"fail/five digits", rfcSecret, code(cur)[:5], 0, 0, ErrBadCode},
		{"fail/seven digits", rfcSecret, code(cur) + "0", 0, 0, ErrBadCode},
		{"fail/padded with a space", rfcSecret, " " + code(cur), 0, 0, ErrBadCode},
		{"fail/not digits", rfcSecret, "abcdef", 0, 0, ErrBadCode},
		{"fail/empty", rfcSecret, "", 0, 0, ErrBadCode},
		{"fail/malformed secret", "not base32!", code(cur), 0, 0, ErrBadTOTPSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			step, err := ValidateTOTP(tc.secret, secret.NewPassword(tc.code), now, tc.lastUsed)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if step != tc.wantStep {
				t.Fatalf("step = %d, want %d", step, tc.wantStep)
			}
		})
	}
}

func TestValidateTOTPCodeWorksOnce(t *testing.T) {
	now := time.Unix(2000000000, 0)
	c, _ := totp.GenerateCode(rfcSecret, now)
	var last int64
	step, err := ValidateTOTP(rfcSecret, secret.NewPassword(c), now, last)
	if err != nil {
		t.Fatal(err)
	}
	last = step
	// The same code, 20 s later and still inside the window: refused.
	if _, err := ValidateTOTP(rfcSecret, secret.NewPassword(c), now.Add(20*time.Second), last); !errors.Is(err, ErrCodeReplayed) {
		t.Fatalf("second use: %v, want ErrCodeReplayed", err)
	}
	next, _ := totp.GenerateCode(rfcSecret, now.Add(TOTPPeriod*time.Second))
	if _, err := ValidateTOTP(rfcSecret, secret.NewPassword(next), now.Add(TOTPPeriod*time.Second), last); err != nil {
		t.Fatalf("the next step's code: %v", err)
	}
}

func TestTOTPStepBeforeEpoch(t *testing.T) {
	for _, tc := range []struct{ unix, step int64 }{{-1, -1}, {-30, -1}, {-31, -2}, {0, 0}, {29, 0}, {30, 1}} {
		if got := TOTPStep(time.Unix(tc.unix, 0)); got != tc.step {
			t.Errorf("TOTPStep(%d) = %d, want %d", tc.unix, got, tc.step)
		}
	}
}

func TestNewTOTP(t *testing.T) {
	seed, u, err := NewTOTP(testRand(8), "Coffer", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(seed)
	if err != nil || len(raw) != TOTPSecretSize {
		t.Fatalf("seed is %d bytes (%v), want %d", len(raw), err, TOTPSecretSize)
	}
	again, _, _ := NewTOTP(testRand(8), "Coffer", "alice@example.com")
	other, _, _ := NewTOTP(testRand(9), "Coffer", "alice@example.com")
	if again != seed || other == seed {
		t.Error("NewTOTP does not draw its seed from r")
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	if pu.Scheme != "otpauth" || pu.Host != "totp" || pu.Path != "/Coffer:alice@example.com" ||
		q.Get("secret") != seed || q.Get("issuer") != "Coffer" || q.Get("algorithm") != "SHA1" ||
		q.Get("digits") != "6" || q.Get("period") != "30" {
		t.Fatalf("otpauth URL = %s", u)
	}
	now := time.Unix(1900000000, 0)
	c, _ := totp.GenerateCode(seed, now)
	if _, err := ValidateTOTP(seed, secret.NewPassword(c), now, 0); err != nil {
		t.Fatalf("a code from the new secret: %v", err)
	}
	if _, _, err := NewTOTP(&shortReader{n: 3}, "Coffer", "alice"); err == nil {
		t.Error("a failing random source did not fail")
	}
}

func FuzzValidateTOTP(f *testing.F) {
	f.Add(rfcSecret, "287082", int64(59), int64(0))
	f.Add("", "", int64(0), int64(-5))
	f.Fuzz(func(t *testing.T, seed, code string, unix, last int64) {
		step, err := ValidateTOTP(seed, secret.NewPassword(code), time.Unix(unix, 0), last)
		if err != nil {
			return
		}
		if step <= last || len(code) != TOTPDigits {
			t.Fatalf("accepted step %d (last %d) for code %q", step, last, code)
		}
		if d := step - TOTPStep(time.Unix(unix, 0)); d < -TOTPSkew || d > TOTPSkew {
			t.Fatalf("accepted step %d outside the window", step)
		}
	})
}
