package auth

import (
	"crypto/rand"
	"regexp"
	"strings"
	"testing"
)

func TestNewRecoveryCodes(t *testing.T) {
	codes, hashes, err := NewRecoveryCodes(rand.Reader, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 || len(hashes) != 10 {
		t.Fatalf("%d codes, %d hashes", len(codes), len(hashes))
	}
	re := regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}$`)
	seen := map[string]bool{}
	for i, c := range codes {
		if !re.MatchString(c) {
			t.Errorf("code %q is not xxxx-xxxx-xxxx", c)
		}
		if seen[c] {
			t.Errorf("code %q repeated", c)
		}
		seen[c] = true
		if strings.Contains(hashes[i], strings.ReplaceAll(c, "-", "")) {
			t.Error("hash contains the code")
		}
		if j, ok := MatchRecoveryCode(hashes, c); !ok || j != i {
			t.Errorf("code %d matches %d, %v", i, j, ok)
		}
	}
	for _, n := range []int{0, -1, 101} {
		if _, _, err := NewRecoveryCodes(rand.Reader, n); err == nil {
			t.Errorf("n = %d accepted", n)
		}
	}
	if _, _, err := NewRecoveryCodes(&shortReader{n: 20}, 10); err == nil {
		t.Error("a failing random source did not fail")
	}
}

func TestMatchRecoveryCode(t *testing.T) {
	// Hashes of known raw codes, the second with characters people misread.
	hashes := []string{sha256Hash("abcdefghjkmn"), sha256Hash("01ab01ab01ab"), "garbage", sha256Hash("zzzzzzzzzzzz")}
	cases := []struct {
		name      string
		hashes    []string
		code      string
		wantIndex int
		wantOK    bool
	}{
		{"ok/as printed", hashes, "abcd-efgh-jkmn", 0, true},
		{"ok/upper case", hashes, "ABCD-EFGH-JKMN", 0, true},
		{"ok/without dashes", hashes, "abcdefghjkmn", 0, true},
		{"ok/with spaces", hashes, "abcd efgh jkmn", 0, true},
		{"ok/O for 0 and I or L for 1", hashes, "OIAB-0lab-OLAB", 1, true},
		{"ok/after a malformed hash", hashes, "zzzz-zzzz-zzzz", 3, true},
		{"ok/first of duplicates", []string{"x", hashes[1], hashes[1]}, "01ab-01ab-01ab", 1, true},
		{"fail/wrong code", hashes, "abcd-efgh-jkmp", -1, false},
		{"fail/too short", hashes, "abcd-efgh-jkm", -1, false},
		{"fail/too long", hashes, "abcd-efgh-jkmn-p", -1, false},
		{"fail/letter outside the alphabet", hashes, "abcd-efgh-jkmu", -1, false},
		{"fail/empty", hashes, "", -1, false},
		{"fail/no hashes", nil, "abcd-efgh-jkmn", -1, false},
		{"fail/malformed hash only", []string{"sha256$zz"}, "abcd-efgh-jkmn", -1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i, ok := MatchRecoveryCode(tc.hashes, tc.code)
			if i != tc.wantIndex || ok != tc.wantOK {
				t.Fatalf("MatchRecoveryCode = %d, %v; want %d, %v", i, ok, tc.wantIndex, tc.wantOK)
			}
		})
	}
}

func FuzzMatchRecoveryCode(f *testing.F) {
	_, hashes, err := NewRecoveryCodes(testRand(4), 10)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("abcd-efgh-jkmn")
	f.Add("")
	f.Fuzz(func(t *testing.T, code string) {
		i, ok := MatchRecoveryCode(hashes, code)
		if !ok {
			if i != -1 {
				t.Fatalf("no match but index %d", i)
			}
			return
		}
		norm, _ := normalizeRecoveryCode(code)
		if sha256Hash(norm) != hashes[i] {
			t.Fatalf("%q matched hash %d it does not hash to", code, i)
		}
	})
}
