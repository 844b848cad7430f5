package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/secret"
)

// testMAC is a RecoveryMAC over fixed per-version keys.
func testMAC(version uint32, norm []byte) ([]byte, error) {
	if version > 9 {
		return nil, errors.New("no such version")
	}
	h := hmac.New(sha256.New, []byte{byte(version), 'k'})
	h.Write(norm)
	return h.Sum(nil), nil
}

func hashCode(t testing.TB, version uint32, code string) string {
	t.Helper()
	norm, ok := NormalizeRecoveryCode(code)
	if !ok {
		t.Fatalf("code %q malformed", code)
	}
	m, _ := testMAC(version, []byte(norm))
	return RecoveryHash(version, m)
}

func TestNewRecoveryCodes(t *testing.T) {
	codes, err := NewRecoveryCodes(rand.Reader, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 {
		t.Fatalf("%d codes", len(codes))
	}
	g := `[0-9a-hjkmnp-tv-z]{4}`
	re := regexp.MustCompile(`^` + g + `-` + g + `-` + g + `-` + g + `$`)
	seen := map[string]bool{}
	hashes := make([]string, len(codes))
	for i, c := range codes {
		if !re.MatchString(c) {
			t.Errorf("code %q is not xxxx-xxxx-xxxx-xxxx (80 bits)", c)
		}
		if seen[c] {
			t.Errorf("code %q repeated", c)
		}
		seen[c] = true
		hashes[i] = hashCode(t, 2, c)
		if strings.Contains(hashes[i], strings.ReplaceAll(c, "-", "")) {
			t.Error("hash contains the code")
		}
	}
	for i, c := range codes {
		if j, ok, err := MatchRecoveryCode(hashes, secret.NewPassword(c), testMAC); err != nil || !ok || j != i {
			t.Errorf("code %d matches %d, %v, %v", i, j, ok, err)
		}
	}
	for _, n := range []int{0, -1, 101} {
		if _, err := NewRecoveryCodes(rand.Reader, n); err == nil {
			t.Errorf("n = %d accepted", n)
		}
	}
	if _, err := NewRecoveryCodes(&shortReader{n: 20}, 10); err == nil {
		t.Error("a failing random source did not fail")
	}
}

func TestMatchRecoveryCode(t *testing.T) {
	hashes := []string{
		hashCode(t, 1, "abcd-efgh-jkmn-pqrs"),
		hashCode(t, 2, "01ab-01ab-01ab-01ab"),
		"garbage",
		sha256Hash("zzzzzzzzzzzz"), // a legacy 60-bit code, unsalted
		"hmac$v1$" + strings.Repeat("A", 64),
	}
	cases := []struct {
		name      string
		hashes    []string
		code      string
		wantIndex int
		wantOK    bool
	}{
		{"ok/as printed", hashes, "abcd-efgh-jkmn-pqrs", 0, true},
		{"ok/upper case", hashes, "ABCD-EFGH-JKMN-PQRS", 0, true},
		{"ok/without dashes", hashes, "abcdefghjkmnpqrs", 0, true},
		{"ok/with spaces", hashes, "abcd efgh jkmn pqrs", 0, true},
		{"ok/O for 0 and I or L for 1, another key version", hashes, "OIAB-0lab-OLAB-oiab", 1, true},
		{"ok/legacy code after a malformed hash", hashes, "zzzz-zzzz-zzzz", 3, true},
		{"ok/first of duplicates", []string{"x", hashes[1], hashes[1]}, "01ab-01ab-01ab-01ab", 1, true},
		{"fail/wrong code", hashes, "abcd-efgh-jkmn-pqrt", -1, false},
		{"fail/too short", hashes, "abcd-efgh-jkmn-pqr", -1, false},
		{"fail/too long", hashes, "abcd-efgh-jkmn-pqrs-t", -1, false},
		{"fail/letter outside the alphabet", hashes, "abcd-efgh-jkmn-pqru", -1, false},
		{"fail/empty", hashes, "", -1, false},
		{"fail/no hashes", nil, "abcd-efgh-jkmn-pqrs", -1, false},
		{"fail/a new code is never checked as a legacy hash", []string{sha256Hash("abcdefghjkmnpqrs")}, "abcd-efgh-jkmn-pqrs", -1, false},
		{"fail/malformed hash only", []string{"sha256$zz", "hmac$v0$00"}, "abcd-efgh-jkmn-pqrs", -1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i, ok, err := MatchRecoveryCode(tc.hashes, secret.NewPassword(tc.code), testMAC)
			if err != nil || i != tc.wantIndex || ok != tc.wantOK {
				t.Fatalf("MatchRecoveryCode = %d, %v, %v; want %d, %v", i, ok, err, tc.wantIndex, tc.wantOK)
			}
		})
	}
	if _, _, err := MatchRecoveryCode([]string{hashCode(t, 1, "abcd-efgh-jkmn-pqrs"), "hmac$v10$" + strings.Repeat("0", 64)},
		secret.NewPassword("abcd-efgh-jkmn-pqrs"), testMAC); err == nil {
		t.Fatal("a failing MAC was not an error")
	}
}

func FuzzMatchRecoveryCode(f *testing.F) {
	codes, err := NewRecoveryCodes(testRand(4), 10)
	if err != nil {
		f.Fatal(err)
	}
	hashes := make([]string, len(codes))
	for i, c := range codes {
		hashes[i] = hashCode(f, 1, c)
	}
	f.Add("abcd-efgh-jkmn-pqrs")
	f.Add("")
	f.Fuzz(func(t *testing.T, code string) {
		i, ok, err := MatchRecoveryCode(hashes, secret.NewPassword(code), testMAC)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if i != -1 {
				t.Fatalf("no match but index %d", i)
			}
			return
		}
		norm, _ := NormalizeRecoveryCode(code)
		if m, _ := testMAC(1, []byte(norm)); RecoveryHash(1, m) != hashes[i] {
			t.Fatalf("%q matched hash %d it does not hash to", code, i)
		}
	})
}
