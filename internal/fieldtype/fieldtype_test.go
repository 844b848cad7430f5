package fieldtype

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
)

func TestNormalize(t *testing.T) {
	cases := []struct {
		name, typ, raw  string
		stored, indexed string
		ok              bool
	}{
		{"ok/email lowercased for the index", coffer.TypeEmail, `"Ada@Example.com"`, "Ada@Example.com", "ada@example.com", true},
		{"fail/email without domain dot", coffer.TypeEmail, `"ada@localhost"`, "", "", false},
		{"fail/email with a name", coffer.TypeEmail, `"Ada <ada@example.com>"`, "", "", false},
		{"ok/card with spaces", coffer.TypeCardNumber, `"4111 1111 1111 1111"`, "4111 1111 1111 1111", "4111111111111111", true},
		{"fail/card failing luhn", coffer.TypeCardNumber, `"4111111111111112"`, "", "", false},
		{"fail/card with letters", coffer.TypeCardNumber, `"4111-1111-1111-111a"`, "", "", false},
		{"ok/ssn without dashes", coffer.TypeSSN, `"123456789"`, "123-45-6789", "123456789", true},
		{"fail/ssn area 000", coffer.TypeSSN, `"000-12-3456"`, "", "", false},
		{"fail/ssn area 666", coffer.TypeSSN, `"666-12-3456"`, "", "", false},
		{"fail/ssn area 9xx", coffer.TypeSSN, `"912-12-3456"`, "", "", false},
		{"fail/ssn serial 0000", coffer.TypeSSN, `"123-45-0000"`, "", "", false},
		{"ok/phone e164", coffer.TypePhone, `"+1 (415) 555-0123"`, "+1 (415) 555-0123", "+14155550123", true},
		{"fail/phone too short", coffer.TypePhone, `"12345"`, "", "", false},
		{"ok/date", coffer.TypeDate, `"2024-02-29"`, "2024-02-29", "2024-02-29", true},
		{"fail/date invalid day", coffer.TypeDate, `"2023-02-29"`, "", "", false},
		{"ok/integer number", coffer.TypeInteger, `42`, "42", "42", true},
		{"ok/integer string", coffer.TypeInteger, `"-7"`, "-7", "-7", true},
		{"fail/integer float", coffer.TypeInteger, `4.5`, "", "", false},
		{"fail/integer overflow", coffer.TypeInteger, `18446744073709551616`, "", "", false},
		{"fail/integer 1e400", coffer.TypeInteger, `1e400`, "", "", false},
		{"fail/string null", coffer.TypeString, `null`, "", "", false},
		{"fail/string NUL", coffer.TypeString, `"a\u0000b"`, "", "", false},
		{"fail/string number", coffer.TypeString, `5`, "", "", false},
		// Unicode: canonically equivalent text is the same value (NFC);
		// emails fold case by Unicode rules; look-alikes that are not
		// equivalent are refused in emails.
		{"ok/string composed (NFC)", coffer.TypeString, `"Cafe\u0301"`, "Caf\u00e9", "Caf\u00e9", true},
		{"ok/string keeps case", coffer.TypeString, `"ADA"`, "ADA", "ADA", true},
		{"ok/email with a Kelvin sign is the K it is equivalent to", coffer.TypeEmail, `"\u212Aate@example.com"`,
			"Kate@example.com", "kate@example.com", true},
		{"ok/email folded by Unicode rules", coffer.TypeEmail, `"Stra\u00dfe@Example.de"`, "Stra\u00dfe@Example.de", "strasse@example.de", true},
		{"ok/email in one other script", coffer.TypeEmail, `"\u043a\u0430\u0442\u044f@example.com"`,
			"\u043a\u0430\u0442\u044f@example.com", "\u043a\u0430\u0442\u044f@example.com", true},
		{"fail/email mixing Latin and Cyrillic look-alikes", coffer.TypeEmail, `"p\u0430ypal@example.com"`, "", "", false},
		{"fail/email domain mixing scripts", coffer.TypeEmail, `"ann@ex\u0430mple.com"`, "", "", false},
		{"fail/email with fullwidth compatibility forms", coffer.TypeEmail, `"\uff4bate@example.com"`, "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, ix, err := Normalize(coffer.Field{Name: "f", Type: c.typ}, json.RawMessage(c.raw))
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if err != nil {
				if coffer.ErrorCode(err) != coffer.EINVALID {
					t.Fatalf("code %s", coffer.ErrorCode(err))
				}
				return
			}
			if s != c.stored || ix != c.indexed {
				t.Fatalf("got (%+q, %+q), want (%+q, %+q)", s, ix, c.stored, c.indexed)
			}
		})
	}
}

// FuzzNormalize: any JSON value for any type either validates or fails
// with a 422 whose message does not contain the value.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{`"a@b.io"`, `"4111111111111111"`, `12`, `"123-45-6789"`, `"2020-01-01"`, `null`, `"+14155550123"`} {
		for _, typ := range []string{"string", "email", "phone", "card_number", "ssn", "date", "integer"} {
			f.Add(typ, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, typ string, raw []byte) {
		if !validTypes[typ] {
			return
		}
		_, _, err := Normalize(coffer.Field{Name: "f", Type: typ}, raw)
		if err == nil {
			return
		}
		if coffer.ErrorCode(err) != coffer.EINVALID {
			t.Fatalf("code %s for %q", coffer.ErrorCode(err), raw)
		}
		var s string
		if json.Unmarshal(raw, &s) == nil && len(s) >= 6 && strings.Contains(coffer.ErrorMessage(err), s) {
			t.Fatalf("message echoes the value: %q", coffer.ErrorMessage(err))
		}
	})
}
