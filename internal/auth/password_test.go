package auth

import (
	"crypto/rand"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/coffer"

	"github.com/cofferhq/coffer/internal/secret"
)

func TestHashPasswordMakesAVerifiablePHCString(t *testing.T) {
	const pw = "correct horse battery"
	h, err := HashPassword(rand.Reader, secret.NewPassword(pw))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=3,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("hash %q is not the expected PHC string", h)
	}
	if strings.Contains(h, pw) {
		t.Fatal("hash contains the password")
	}
	if ok, err := VerifyPassword(h, secret.NewPassword(pw)); !ok || err != nil {
		t.Fatalf("VerifyPassword(right) = %v, %v", ok, err)
	}
	if ok, err := VerifyPassword(h, secret.NewPassword(pw+"!")); ok || err != nil {
		t.Fatalf("VerifyPassword(wrong) = %v, %v", ok, err)
	}
	if NeedsRehash(h) {
		t.Error("a fresh hash needs a rehash")
	}
	h2, _ := HashPassword(rand.Reader, secret.NewPassword(pw))
	if h2 == h {
		t.Error("two hashes of one password are equal: the salt is not fresh")
	}
	if _, err := HashPassword(&shortReader{n: 4}, secret.NewPassword(pw)); err == nil {
		t.Error("a failing random source did not fail")
	}
}

// TestVerifyPasswordReferenceVectors checks against PHC strings made by the
// argon2 reference implementation, with parameters other than ours: the
// parameters really are read from the string.
func TestVerifyPasswordReferenceVectors(t *testing.T) {
	var v struct {
		Vectors []struct{ Password, PHC string } `json:"vectors"`
	}
	readJSON(t, "testdata/argon2id_phc.json", &v)
	if len(v.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, tc := range v.Vectors {
		t.Run(tc.PHC[:40], func(t *testing.T) {
			if ok, err := VerifyPassword(tc.PHC, secret.NewPassword(tc.Password)); !ok || err != nil {
				t.Fatalf("reference hash refused: %v, %v", ok, err)
			}
			if ok, err := VerifyPassword(tc.PHC, secret.NewPassword(tc.Password+"x")); ok || err != nil {
				t.Fatalf("wrong password accepted: %v, %v", ok, err)
			}
			if !NeedsRehash(tc.PHC) {
				t.Error("a hash with other parameters does not need a rehash")
			}
			p, err := parsePHC(tc.PHC)
			if err != nil || p.encode() != tc.PHC {
				t.Errorf("parse/encode round trip = %q, %v", p.encode(), err)
			}
		})
	}
}

func TestVerifyPasswordRefusesMalformedHashes(t *testing.T) {
	const salt, key = "c29tZXNhbHQ", "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	cases := []struct{ name, hash string }{
		{"fail/empty", ""},
		{"fail/argon2i", "$argon2i$v=19$m=256,t=2,p=1$" + salt + "$" + key},
		{"fail/version 16", "$argon2id$v=16$m=256,t=2,p=1$" + salt + "$" + key},
		{"fail/no version", "$argon2id$m=256,t=2,p=1$" + salt + "$" + key},
		{"fail/parameters reordered", "$argon2id$v=19$t=2,m=256,p=1$" + salt + "$" + key},
		{"fail/leading zero", "$argon2id$v=19$m=0256,t=2,p=1$" + salt + "$" + key},
		{"fail/negative", "$argon2id$v=19$m=256,t=-2,p=1$" + salt + "$" + key},
		{"fail/zero passes", "$argon2id$v=19$m=256,t=0,p=1$" + salt + "$" + key},
		{"fail/zero lanes", "$argon2id$v=19$m=256,t=2,p=0$" + salt + "$" + key},
		{"fail/memory over the bound", "$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + key},
		{"fail/memory overflowing", "$argon2id$v=19$m=99999999999999999999,t=2,p=1$" + salt + "$" + key},
		{"fail/passes over the bound", "$argon2id$v=19$m=256,t=1000,p=1$" + salt + "$" + key},
		{"fail/memory below 8 per lane", "$argon2id$v=19$m=8,t=2,p=2$" + salt + "$" + key},
		{"fail/extra parameter", "$argon2id$v=19$m=256,t=2,p=1,k=1$" + salt + "$" + key},
		{"fail/missing hash", "$argon2id$v=19$m=256,t=2,p=1$" + salt},
		{"fail/extra field", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + key + "$x"},
		{"fail/salt too short", "$argon2id$v=19$m=256,t=2,p=1$c29tZQ$" + key},
		{"fail/hash too short", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$c29tZXNhbHQ"},
		{"fail/padded base64", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "=$" + key},
		{"fail/base64url alphabet", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + strings.ReplaceAll(key, "/", "_")},
		{"fail/bcrypt", "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ012"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := VerifyPassword(tc.hash, secret.NewPassword("password"))
			if ok || !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("VerifyPassword = %v, %v; want false, ErrMalformedHash", ok, err)
			}
			if !NeedsRehash(tc.hash) {
				t.Error("a malformed hash does not need a rehash")
			}
		})
	}
}

func TestCheckPasswordPolicy(t *testing.T) {
	cases := []struct {
		name, pw, user string
		ok             bool
	}{
		{"ok/long and unusual", "tangerine-orbit-quiet-47", "alice", true},
		{"ok/exactly 12 characters", "xK9#mq2Lp7vR", "alice", true},
		{"ok/exactly 256 characters", strings.Repeat("ab", 128), "alice", true},
		{"ok/12 multi-byte characters", "日本語のパスワードです長い", "alice", true},
		{"ok/short username inside is allowed", "bob-likes-kayaks-9", "bo", true},
		{"ok/no username", "tangerine-orbit-quiet-47", "", true},
		{"fail/11 characters", "xK9#mq2Lp7v", "alice", false},
		{"fail/empty", "", "alice", false},
		{"fail/257 characters", strings.Repeat("ab", 128) + "c", "alice", false},
		{"fail/short in characters though long in bytes", "日本語のパスワード", "alice", false},
		{"fail/invalid UTF-8", "abcdefghijk\xff\xfe", "alice", false},
		{"fail/one character repeated", "zzzzzzzzzzzzzzzz", "alice", false},
		{"fail/equals the username", "alice.wonderland", "alice.wonderland", false},
		{"fail/contains the username", "my-alice-password-2030", "alice", false},
		{"fail/contains the username in other case", "MY-ALICE-password-2030", "Alice", false},
		{"fail/common password", "password1234", "alice", false},
		{"fail/common password in other case", "PassWord1234", "alice", false},
		{"fail/common keyboard walk", "qwertyuiop123", "alice", false},
		{"fail/common phrase", "iloveyou1234", "alice", false},
		{"fail/common digits", "123456789012", "alice", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPasswordPolicy(secret.NewPassword(tc.pw), tc.user)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			var e *coffer.Error
			if !errors.As(err, &e) || e.Code != coffer.EINVALID {
				t.Fatalf("err = %#v, want a *coffer.Error with EINVALID", err)
			}
			if tc.pw != "" && strings.Contains(err.Error(), tc.pw) {
				t.Fatal("the error repeats the password")
			}
		})
	}
}

// TestCommonPasswordList keeps the embedded list usable: large enough,
// lower case, trimmed, without duplicates, and each 12+ character entry
// really refused.
func TestCommonPasswordList(t *testing.T) {
	seen := map[string]bool{}
	long := 0
	for line := range strings.Lines(commonPasswords) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" || line[0] == '#' {
			continue
		}
		if line != strings.ToLower(line) || strings.TrimFunc(line, unicode.IsSpace) != line {
			t.Errorf("entry %q is not lower case and trimmed", line)
		}
		if seen[line] {
			t.Errorf("entry %q repeated", line)
		}
		seen[line] = true
		if utf8.RuneCountInString(line) >= MinPasswordLen {
			long++
			if err := CheckPasswordPolicy(secret.NewPassword(strings.ToUpper(line[:1])+line[1:]), "someone"); err == nil {
				t.Errorf("common password %q accepted", line)
			}
		}
	}
	if len(seen) < 300 || long < 150 {
		t.Fatalf("list has %d entries (%d of 12+ characters); want at least 300 (150)", len(seen), long)
	}
}

// FuzzParsePHC: the parser never panics, and whatever it accepts encodes
// back to the same string, so a stored hash has one spelling.
func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzb21lc2FsdA$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	f.Add("$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4")
	f.Add("$argon2id$v=19$m=,t=,p=$$")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("error %v does not wrap ErrMalformedHash", err)
			}
			return
		}
		if p.encode() != s {
			t.Fatalf("parsed %q but encodes as %q", s, p.encode())
		}
	})
}

func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		if _, err := HashPassword(rand.Reader, secret.NewPassword("tangerine-orbit-quiet-47")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDummyVerify(b *testing.B) {
	for b.Loop() {
		DummyVerify()
	}
}
