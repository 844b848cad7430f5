package auth

import (
	"crypto/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/secret"
)

func TestNewClientSecret(t *testing.T) {
	re := regexp.MustCompile(`^cs_[0-9A-Za-z]{43}$`)
	seen := map[string]bool{}
	for range 50 {
		s, err := NewClientSecret(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(s) {
			t.Fatalf("secret %q does not have the cs_ + 43 base62 form", s)
		}
		if seen[s] {
			t.Fatal("repeated secret")
		}
		seen[s] = true
	}
	a, _ := NewClientSecret(testRand(1))
	b, _ := NewClientSecret(testRand(1))
	if a != b {
		t.Error("the same random source gave different secrets: Rand is not honoured")
	}
	if _, err := NewClientSecret(&shortReader{n: 5}); err == nil {
		t.Error("a failing random source did not fail")
	}
}

// TestRandomStringIsUniform checks the rejection sampling: over many
// characters every symbol of the alphabet turns up close to its share.
func TestRandomStringIsUniform(t *testing.T) {
	const n = 62 * 2000
	s, err := randomString(rand.Reader, base62, n)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[rune]int{}
	for _, c := range s {
		counts[c]++
	}
	if len(counts) != 62 {
		t.Fatalf("%d distinct symbols, want 62", len(counts))
	}
	for c, k := range counts {
		// Expected 2000, σ ≈ 44: ±300 is ~7σ, a biased sampler (b % 62 without
		// rejection gives the first 8 symbols 5/4 of the share) fails it.
		if k < 1700 || k > 2300 {
			t.Errorf("symbol %q appeared %d times, want about 2000", c, k)
		}
	}
}

func TestNewClientID(t *testing.T) {
	re := regexp.MustCompile(`^cl_[0-9a-hjkmnp-tv-z]{20}$`)
	a, err := NewClientID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewClientID(rand.Reader)
	if !re.MatchString(a) || a == b {
		t.Fatalf("ids %q, %q", a, b)
	}
	if _, err := NewClientID(&shortReader{n: 3}); err == nil {
		t.Error("a failing random source did not fail")
	}
}

func TestHashClientSecretKnownAnswer(t *testing.T) {
	// FIPS 180-2 B.1: SHA-256("abc").
	const want = "sha256$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := HashClientSecret(secret.NewPassword("abc")); got != want {
		t.Fatalf("HashClientSecret(abc) = %s, want %s", got, want)
	}
}

func TestVerifyClientSecret(t *testing.T) {
	cs, _ := NewClientSecret(testRand(3))
	hash := HashClientSecret(secret.NewPassword(cs))
	hexPart := strings.TrimPrefix(hash, "sha256$")
	cases := []struct {
		name   string
		hash   string
		secret string
		want   bool
	}{
		{"ok/matching secret", hash, cs, true},
		{"fail/other secret", hash, cs[:len(cs)-1] + "x", false},
		{"fail/empty secret", hash, "", false},
		{"fail/empty hash", "", cs, false},
		{"fail/no prefix", hexPart, cs, false},
		{"fail/other algorithm", "sha512$" + hexPart, cs, false},
		{"fail/upper-case prefix", "SHA256$" + hexPart, cs, false},
		{"fail/upper-case hex", "sha256$" + strings.ToUpper(hexPart), cs, false},
		{"fail/short digest", hash[:len(hash)-2], cs, false},
		{"fail/long digest", hash + "00", cs, false},
		{"fail/not hex", hash[:len(hash)-1] + "g", cs, false},
		{"fail/all-zero digest", "sha256$" + strings.Repeat("0", 64), cs, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := VerifyClientSecret(tc.hash, secret.NewPassword(tc.secret)); got != tc.want {
				t.Fatalf("VerifyClientSecret = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzVerifyClientSecret: a hash verifies a secret only if it is exactly
// the hash HashClientSecret makes of it — no second spelling.
func FuzzVerifyClientSecret(f *testing.F) {
	f.Add(HashClientSecret(secret.NewPassword("cs_x")), "cs_x")
	f.Add("sha256$", "")
	f.Add("sha256$"+strings.Repeat("A", 64), "x")
	f.Fuzz(func(t *testing.T, hash, cs string) {
		if VerifyClientSecret(hash, secret.NewPassword(cs)) && hash != HashClientSecret(secret.NewPassword(cs)) {
			t.Fatalf("hash %q verified a secret it was not made from", hash)
		}
	})
}
