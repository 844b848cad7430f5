package fpe

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

var testKey = bytes.Repeat([]byte{0x5a}, 32)

func mustNew(t testing.TB, key []byte) *Tokenizer {
	t.Helper()
	tk, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// sameShape reports whether a and b have the same length in runes, the same
// class at each position and the same kept characters.
func sameShape(a, b string) bool {
	ra, rb := []rune(a), []rune(b)
	if len(ra) != len(rb) {
		return false
	}
	for i := range ra {
		ca, cb := classOf(ra[i]), classOf(rb[i])
		if ca != cb || (ca == kept && ra[i] != rb[i]) {
			return false
		}
	}
	return true
}

func luhnValid(s string) bool {
	var d []uint16
	for _, r := range s {
		if r >= '0' && r <= '9' {
			d = append(d, uint16(r-'0'))
		}
	}
	return luhnSum(d) == 0
}

func TestTokenizeKeepsFormatAndRoundTrips(t *testing.T) {
	tk := mustNew(t, testKey)
	tests := []struct {
		name, typ, value string
		opts             Options
	}{
		{"ok/card-plain", TypeCardNumber, "4111111111111111", Options{}},
		{"ok/card-dashes", TypeCardNumber, "4111-1111-1111-1111", Options{}},
		{"ok/card-spaces-amex", TypeCardNumber, "3782 822463 10005", Options{}},
		{"ok/card-luhn-valid-token", TypeCardNumber, "5555555555554444", Options{LuhnValid: true}},
		{"ok/card-19-keep-first-six", TypeCardNumber, "6011000990139424009", Options{KeepFirstSix: true}},
		{"ok/card-13-digits", TypeCardNumber, "4222222222222", Options{}},
		{"ok/ssn", TypeSSN, "123-45-6789", Options{}},
		{"ok/ssn-bare", TypeSSN, "123456789", Options{}},
		{"ok/phone-e164", TypePhone, "+14155550123", Options{}},
		{"ok/phone-formatted", TypePhone, "(415) 555-0123", Options{}},
		{"ok/phone-keep-last-two", TypePhone, "+44 20 7946 0958", Options{KeepLast: 2}},
		{"ok/date", TypeDate, "1990-07-31", Options{}},
		{"ok/timestamp", TypeDate, "2024-01-31T12:34:56Z", Options{}},
		{"ok/integer", TypeInteger, "-1234567", Options{}},
		{"ok/email", TypeEmail, "alice@example.com", Options{}},
		{"ok/email-short-local", TypeEmail, "bob@example.co.uk", Options{}},
		{"ok/email-plus-and-digits", TypeEmail, "Alice.Smith+tag42@mail.example.org", Options{}},
		{"ok/string-name", TypeString, "Ada Lovelace", Options{}},
		{"ok/string-mixed", TypeString, "Flat 3B, 12 Main St", Options{}},
		{"ok/string-unicode-kept", TypeString, "Zoë Ångström-Øster", Options{}},
		{"ok/string-long", TypeString, strings.Repeat("abc123XYZ ", 30), Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := tk.Tokenize(tt.typ, tt.value, tt.opts)
			if err != nil {
				t.Fatalf("Tokenize: %v", err)
			}
			if tok == tt.value {
				t.Fatal("token equals value")
			}
			if !sameShape(tt.value, tok) {
				t.Fatalf("token %q does not keep the shape of %q", tok, tt.value)
			}
			again, err := tk.Tokenize(tt.typ, tt.value, tt.opts)
			if err != nil || again != tok {
				t.Fatalf("Tokenize is not deterministic: %q then %q (%v)", tok, again, err)
			}
			back, err := tk.Detokenize(tt.typ, tok, tt.opts)
			if err != nil {
				t.Fatalf("Detokenize: %v", err)
			}
			if back != tt.value {
				t.Fatalf("Detokenize = %q, want %q", back, tt.value)
			}
		})
	}
}

func TestCardTokenKeepsDigitsAndLuhnState(t *testing.T) {
	tk := mustNew(t, testKey)
	rng := rand.New(rand.NewChaCha8([32]byte{'c', 'a', 'r', 'd'}))
	for range 500 {
		n := minCardDigits + rng.IntN(maxCardDigits-minCardDigits+1)
		card := randomCard(rng, n)
		opts := Options{LuhnValid: rng.IntN(2) == 0, KeepFirstSix: n >= 17 && rng.IntN(2) == 0}
		tok, err := tk.Tokenize(TypeCardNumber, card, opts)
		if err != nil {
			t.Fatalf("Tokenize(%d digits, %+v): %v", n, opts, err)
		}
		if tok[n-4:] != card[n-4:] {
			t.Fatalf("last four changed: %s → %s", card, tok)
		}
		if opts.KeepFirstSix && tok[:6] != card[:6] {
			t.Fatalf("first six changed: %s → %s", card, tok)
		}
		if luhnValid(tok) != opts.LuhnValid {
			t.Fatalf("token %s: Luhn valid = %v, want %v", tok, luhnValid(tok), opts.LuhnValid)
		}
		back, err := tk.Detokenize(TypeCardNumber, tok, opts)
		if err != nil || back != card {
			t.Fatalf("Detokenize = %s, %v; want %s", back, err, card)
		}
	}
}

func randomCard(rng *rand.Rand, n int) string {
	d := make([]uint16, n)
	for i := range d {
		d[i] = uint16(rng.IntN(10))
	}
	setLuhn(d, n-1, 0)
	b := make([]byte, n)
	for i, x := range d {
		b[i] = byte('0' + x)
	}
	return string(b)
}

func TestTokenizeRefuses(t *testing.T) {
	tk := mustNew(t, testKey)
	tests := []struct {
		name, typ, value string
		opts             Options
		want             error
	}{
		{"fail/card-luhn-invalid", TypeCardNumber, "4111111111111112", Options{}, ErrInvalidValue},
		{"fail/card-letters", TypeCardNumber, "4111-1111-1111-111a", Options{}, ErrInvalidValue},
		{"fail/card-double-separator", TypeCardNumber, "4111--1111-1111-1111", Options{}, ErrInvalidValue},
		{"fail/card-trailing-separator", TypeCardNumber, "4111111111111111-", Options{}, ErrInvalidValue},
		{"fail/card-too-short", TypeCardNumber, "42424242424", Options{}, ErrInvalidValue},
		{"fail/card-too-long", TypeCardNumber, "42424242424242424242", Options{}, ErrInvalidValue},
		{"fail/card-empty", TypeCardNumber, "", Options{}, ErrInvalidValue},
		{"fail/card-16-keep-first-six-domain", TypeCardNumber, "4111111111111111", Options{KeepFirstSix: true}, ErrDomainTooSmall},
		{"fail/ssn-keep-last-four-domain", TypeSSN, "123-45-6789", Options{KeepLast: 4}, ErrDomainTooSmall},
		{"fail/ssn-eight-digits", TypeSSN, "123-45-678", Options{}, ErrInvalidValue},
		{"fail/ssn-letters", TypeSSN, "123-45-678x", Options{}, ErrInvalidValue},
		{"fail/integer-small", TypeInteger, "12345", Options{}, ErrDomainTooSmall},
		{"fail/integer-not-a-number", TypeInteger, "12a456789", Options{}, ErrInvalidValue},
		{"fail/phone-no-digits", TypePhone, "+() -", Options{}, ErrInvalidValue},
		{"fail/email-tiny", TypeEmail, "a@b.com", Options{}, ErrDomainTooSmall},
		{"fail/email-no-at", TypeEmail, "alice.example.com", Options{}, ErrInvalidValue},
		{"fail/email-two-at", TypeEmail, "a@b@example.com", Options{}, ErrInvalidValue},
		{"fail/email-no-dot", TypeEmail, "alice@localhost", Options{}, ErrInvalidValue},
		{"fail/email-empty-local", TypeEmail, "@example.com", Options{}, ErrInvalidValue},
		{"fail/string-punctuation-only", TypeString, "!!! ---", Options{}, ErrDomainTooSmall},
		{"fail/string-short", TypeString, "Bob", Options{}, ErrDomainTooSmall},
		{"fail/string-invalid-utf8", TypeString, "abc\xffdefgh", Options{}, ErrInvalidValue},
		{"fail/negative-keep-last", TypeString, "abcdefghij", Options{KeepLast: -1}, ErrInvalidValue},
		{"fail/unknown-type", "blob", "abcdefghij", Options{}, ErrUnsupportedType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tk.Tokenize(tt.typ, tt.value, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.value != "" && strings.Contains(err.Error(), tt.value) {
				t.Fatalf("error %q contains the value", err)
			}
		})
	}
}

func TestDetokenizeRejectsRealCard(t *testing.T) {
	tk := mustNew(t, testKey)
	// A Luhn-valid number cannot be a default-options token.
	if _, err := tk.Detokenize(TypeCardNumber, "4111111111111111", Options{}); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
	tok, err := tk.Tokenize(TypeCardNumber, "4111111111111111", Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A token made without LuhnValid is refused with LuhnValid.
	if _, err := tk.Detokenize(TypeCardNumber, tok, Options{LuhnValid: true}); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
}

func TestDistinctKeysGiveDistinctTokens(t *testing.T) {
	other := bytes.Repeat([]byte{0xa5}, 32)
	values := map[string]string{
		TypeCardNumber: "4111111111111111",
		TypeSSN:        "123-45-6789",
		TypeEmail:      "alice@example.com",
		TypeString:     "Ada Lovelace",
	}
	for typ, v := range values {
		a, err := Tokenize(testKey, typ, v, Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Tokenize(other, typ, v, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if a == b {
			t.Errorf("%s: two keys gave the same token", typ)
		}
		// The wrong key does not give the value back.
		if back, err := Detokenize(other, typ, a, Options{}); err == nil && back == v {
			t.Errorf("%s: another key detokenized the token", typ)
		}
	}
}

func TestTypesAreSeparated(t *testing.T) {
	tk := mustNew(t, testKey)
	a, err := tk.Tokenize(TypeInteger, "123456789", Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tk.Tokenize(TypeSSN, "123456789", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("the same digits gave the same token under two types")
	}
}

func TestNewRejectsKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33} {
		if _, err := New(make([]byte, n)); !errors.Is(err, ErrKeySize) {
			t.Errorf("key of %d bytes: err = %v, want ErrKeySize", n, err)
		}
	}
}

func FuzzTokenizeRoundTrip(f *testing.F) {
	types := []string{TypeCardNumber, TypeSSN, TypePhone, TypeDate, TypeInteger, TypeEmail, TypeString}
	f.Add(uint8(0), "4111 1111 1111 1111", false, true, uint8(0))
	f.Add(uint8(1), "123-45-6789", false, false, uint8(0))
	f.Add(uint8(5), "alice@example.com", false, false, uint8(1))
	f.Add(uint8(6), "Flat 3B, 12 Main St", false, false, uint8(2))
	f.Add(uint8(0), "6011000990139424009", true, false, uint8(0))
	f.Fuzz(func(t *testing.T, ti uint8, value string, six, luhn bool, keep uint8) {
		typ := types[int(ti)%len(types)]
		opts := Options{KeepFirstSix: six, LuhnValid: luhn, KeepLast: int(keep % 8)}
		tk := mustNew(t, testKey)
		tok, err := tk.Tokenize(typ, value, opts)
		if err != nil {
			if !errors.Is(err, ErrInvalidValue) && !errors.Is(err, ErrDomainTooSmall) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !utf8.ValidString(tok) || !sameShape(value, tok) {
			t.Fatalf("token %q does not keep the shape of %q", tok, value)
		}
		back, err := tk.Detokenize(typ, tok, opts)
		if err != nil {
			t.Fatalf("Detokenize: %v", err)
		}
		if back != value {
			t.Fatalf("round trip %q → %q → %q", value, tok, back)
		}
	})
}

func BenchmarkTokenizeCard(b *testing.B) {
	tk := mustNew(b, testKey)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Tokenize(TypeCardNumber, "4111-1111-1111-1111", Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenizeMixedString(b *testing.B) {
	tk := mustNew(b, testKey)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Tokenize(TypeString, "Flat 3B, 12 Main St", Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
