package mask

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMask(t *testing.T) {
	m := New([]byte("test hash key"))
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name, mask, in, want string
	}{
		{"card/plain", Card, "4111111111111111", "************1111"},
		{"card/dashes-kept", Card, "4111-1111-1111-1111", "****-****-****-1111"},
		{"card/spaces-kept", Card, "3782 822463 10005", "**** ****** *0005"},
		{"card/short-all-masked", Card, "41111", "*****"},
		{"card/letters-masked", Card, "4111x1111y1111z1111", "***************1111"},
		{"card/empty", Card, "", ""},
		{"card/unicode", Card, "４１１１1111111111111111", "****************1111"},
		{"ssn/dashes", SSN, "123-45-6789", "***-**-6789"},
		{"ssn/bare", SSN, "123456789", "*****6789"},
		{"ssn/too-few-digits", SSN, "123-45-678", "***-**-***"},
		{"ssn/one-char", SSN, "1", "*"},
		{"phone/e164", Phone, "+14155550123", "+*******0123"},
		{"phone/formatted", Phone, "(415) 555-0123", "(***) ***-0123"},
		{"phone/seven-digits", Phone, "555-0123", "***-*123"},
		{"phone/five-digits", Phone, "12345", "***45"},
		{"phone/four-digits", Phone, "1234", "****"},
		{"phone/extension-letters", Phone, "+1 415 555 0123 ext 7", "+* *** *** *123 *** 7"},
		{"email/example", Email, "alice@example.com", "a****@e******.com"},
		{"email/subdomains", Email, "bob.smith@mail.example.co.uk", "b********@m***.e******.c*.uk"},
		{"email/one-letter-local", Email, "a@example.com", "*@e******.com"},
		{"email/no-at", Email, "alice", "a****"},
		{"email/no-dot", Email, "alice@localhost", "a****@l********"},
		{"email/empty", Email, "", ""},
		{"email/only-at", Email, "@", "@"},
		{"email/two-at-last-wins", Email, "a@b@example.com", "a**@e******.com"},
		{"email/unicode", Email, "zoë@exämple.de", "z**@e******.de"},
		{"name/two-words", Name, "Ada Lovelace", "A. L."},
		{"name/lowercase", Name, "grace brewster hopper", "G. B. H."},
		{"name/extra-space", Name, "  Alan   Turing ", "A. T."},
		{"name/unicode", Name, "Émile Zola", "É. Z."},
		{"name/empty", Name, "", ""},
		{"name/one-char", Name, "x", "X."},
		{"redact/value", Redact, "anything", Redacted},
		{"redact/empty", Redact, "", Redacted},
		{"partial/two-two", "partial(2,2,*)", "abcdefgh", "ab****gh"},
		{"partial/default-char", "partial(1,0)", "secret", "s*****"},
		{"partial/hash-char", "partial(0, 3, #)", "123456789", "######789"},
		{"partial/would-show-all", "partial(2,2,*)", "abcd", "****"},
		{"partial/unicode", "partial(1,1,•)", "żółwik", "ż••••k"},
		{"partial/empty", "partial(2,2,*)", "", ""},
		{"partial/long", "partial(0,0,*)", long, strings.Repeat("*", 10000)},
		{"unknown/redacts", "plain", "4111111111111111", Redacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Mask(tt.mask, tt.in)
			if got != tt.want {
				t.Fatalf("Mask(%q, %q) = %q, want %q", tt.mask, tt.in, got, tt.want)
			}
		})
	}
}

func TestHash(t *testing.T) {
	a := New([]byte("key one"))
	b := New([]byte("key two"))
	h1 := a.Mask(Hash, "alice@example.com")
	if !strings.HasPrefix(h1, "h:") || len(h1) != 18 {
		t.Fatalf("hash %q: want h: and 16 hex digits", h1)
	}
	if h1 != a.Mask(Hash, "alice@example.com") {
		t.Fatal("hash is not stable")
	}
	if h1 == a.Mask(Hash, "alice@example.org") {
		t.Fatal("two values gave one pseudonym")
	}
	if h1 == b.Mask(Hash, "alice@example.com") {
		t.Fatal("two keys gave one pseudonym")
	}
	if got := New(nil).Mask(Hash, "x"); got != Redacted {
		t.Fatalf("hash without key = %q, want %q", got, Redacted)
	}
	if got, err := Apply(Hash, "x"); err != nil || got != Redacted {
		t.Fatalf("Apply(hash) = %q, %v; want %q", got, err, Redacted)
	}
}

func TestNewCopiesKey(t *testing.T) {
	key := []byte("mutable key")
	m := New(key)
	before := m.Mask(Hash, "v")
	key[0] = 'X'
	if m.Mask(Hash, "v") != before {
		t.Fatal("Masker shares the caller's key slice")
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"card", true}, {"email", true}, {"phone", true}, {"ssn", true},
		{"name", true}, {"redact", true}, {"hash", true},
		{"partial(2,2,*)", true}, {"partial(0,4)", true}, {"partial( 1 , 1 , x )", true},
		{"", false}, {"Card", false}, {"plain", false}, {"partial", false},
		{"partial()", false}, {"partial(2)", false}, {"partial(2,2,**)", false},
		{"partial(-1,2,*)", false}, {"partial(2,65,*)", false}, {"partial(2,2,*", false},
		{"partial(a,2,*)", false}, {"partial(2,2, )", false}, {"partial(1,1,*,*)", false},
		{"partial(2,2,\xff)", false},
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, ErrUnknownMask) {
			t.Errorf("ValidName(%q) = %v, want ErrUnknownMask", tt.name, err)
		}
	}
}

func TestParseStringRoundTrips(t *testing.T) {
	for _, name := range []string{"card", "email", "hash", "partial(2,2,*)", "partial(0,4,#)"} {
		s, err := Parse(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.String() != name {
			t.Errorf("Parse(%q).String() = %q", name, s.String())
		}
	}
	if (Spec{}).String() != Redact {
		t.Error("zero Spec should be redact")
	}
	var m Masker
	if m.Apply(Spec{}, "x") != Redacted {
		t.Error("zero Spec should redact")
	}
}

func TestDefault(t *testing.T) {
	tests := map[string]string{
		"card_number": Card, "email": Email, "phone": Phone, "ssn": SSN,
		"string": Redact, "date": Redact, "integer": Redact, "unknown": Redact,
	}
	for typ, want := range tests {
		if got := Default(typ); got != want {
			t.Errorf("Default(%q) = %q, want %q", typ, got, want)
		}
		if err := ValidName(Default(typ)); err != nil {
			t.Errorf("Default(%q) is not a valid name: %v", typ, err)
		}
	}
}

func TestApplyUnknown(t *testing.T) {
	if _, err := Apply("nope", "v"); !errors.Is(err, ErrUnknownMask) {
		t.Fatalf("err = %v, want ErrUnknownMask", err)
	}
	if got, err := Apply(Card, "4111111111111111"); err != nil || got != "************1111" {
		t.Fatalf("Apply(card) = %q, %v", got, err)
	}
}

func FuzzMask(f *testing.F) {
	names := []string{Card, Email, Phone, SSN, Name, Redact, Hash, "partial(2,2,*)", "partial(0,0)", "partial(64,64,x)"}
	f.Add(uint8(0), "4111-1111-1111-1111")
	f.Add(uint8(1), "alice@example.com")
	f.Add(uint8(1), "@@..@")
	f.Add(uint8(4), "\xff\xfe Ada")
	f.Add(uint8(7), "żółw")
	m := New([]byte("fuzz key"))
	f.Fuzz(func(t *testing.T, i uint8, value string) {
		name := names[int(i)%len(names)]
		got := m.Mask(name, value)
		if !utf8.ValidString(got) {
			t.Fatalf("Mask(%q) gave invalid UTF-8 %q", name, got)
		}
		switch name {
		case Card, SSN, Phone, "partial(2,2,*)", "partial(0,0)":
			if utf8.RuneCountInString(got) != utf8.RuneCountInString(value) {
				t.Fatalf("Mask(%q, %q) = %q changed the length", name, value, got)
			}
		}
		if name == Card && digits(value) >= 5 && got == value {
			t.Fatalf("card mask left %q unmasked", value)
		}
	})
}

func BenchmarkMaskCard(b *testing.B) {
	m := New(nil)
	s, _ := Parse(Card)
	b.ReportAllocs()
	for b.Loop() {
		m.Apply(s, "4111-1111-1111-1111")
	}
}
