package fieldtype

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/cofferhq/coffer/internal/coffer"
)

// MaxStringBytes bounds one string value.
const MaxStringBytes = 64 << 10

var (
	phoneRE = regexp.MustCompile(`^\+?[0-9][0-9 ()\-.]{5,24}$`)
	ssnRE   = regexp.MustCompile(`^([0-9]{3})-?([0-9]{2})-?([0-9]{4})$`)
)

// validTypes lists the field types of API.md.
var validTypes = map[string]bool{
	coffer.TypeString: true, coffer.TypeEmail: true, coffer.TypePhone: true,
	coffer.TypeCardNumber: true, coffer.TypeSSN: true, coffer.TypeDate: true, coffer.TypeInteger: true,
}

// Valid reports whether typ is a field type.
func Valid(typ string) bool { return validTypes[typ] }

// invalid returns a 422 error naming the field, never its value.
func invalid(field, why string) *coffer.Error {
	return &coffer.Error{Code: coffer.EINVALID, Message: fmt.Sprintf("field %q: %s", field, why)}
}

// Normalize validates raw (the field's JSON) by the field's type and
// returns the stored form and the blind-index form of the value.
func Normalize(f coffer.Field, raw json.RawMessage) (stored, indexed string, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", "", invalid(f.Name, "must not be null")
	}
	if f.Type == coffer.TypeInteger {
		var n json.Number
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&n); err != nil {
			// A string of digits is accepted too.
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return "", "", invalid(f.Name, "must be an integer")
			}
			n = json.Number(strings.TrimSpace(s))
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return "", "", invalid(f.Name, "must be an integer in the 64-bit range")
		}
		s := strconv.FormatInt(i, 10)
		return s, s, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", "", invalid(f.Name, "must be a string")
	}
	return normalizeString(f, s)
}

// normalizeString is Normalize for a value already decoded as a string:
// the value of a request, checked strictly (see NormalizeText).
func normalizeString(f coffer.Field, s string) (stored, indexed string, err error) {
	return NormalizeText(f, s, true)
}

// NormalizeText validates s as a value of field f and returns its stored
// and index forms. Text is Unicode text: canonically equivalent strings
// are one value, stored in NFC (so "e" with a combining acute accent and
// "é" are the same, and a Kelvin sign K is the letter K it is equivalent
// to); an email's index form also folds case by Unicode's full case
// folding ("Straße" and "STRASSE" are one address), where a string's
// keeps case (exact match). With strict set — a value a request submits —
// an email is refused where it holds look-alikes that are not equivalent:
// compatibility characters (fullwidth letters, ligatures: NFKC would
// change them) or a part (the local part, a domain label) mixing scripts
// (Latin "paypal" with a Cyrillic "а"). A value read back from the store
// was checked when written and is not refused again (the rules may have
// grown since).
func NormalizeText(f coffer.Field, s string, strict bool) (stored, indexed string, err error) {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return "", "", invalid(f.Name, "must be valid UTF-8 without NUL")
	}
	if len(s) > MaxStringBytes {
		return "", "", invalid(f.Name, "is too long")
	}
	s = strings.TrimSpace(s)
	switch f.Type {
	case coffer.TypeString:
		s = norm.NFC.String(s)
		if s == "" {
			return "", "", invalid(f.Name, "must not be empty")
		}
		return s, s, nil
	case coffer.TypeEmail:
		s = norm.NFC.String(s)
		a, err := mail.ParseAddress(s)
		if err != nil || a.Address != s || a.Name != "" || len(s) > 254 || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
			return "", "", invalid(f.Name, "must be an email address")
		}
		if strict {
			if norm.NFKC.String(s) != s {
				return "", "", invalid(f.Name, "must not hold compatibility characters (fullwidth letters, ligatures and other look-alikes)")
			}
			if mixesScripts(s) {
				return "", "", invalid(f.Name, "must not mix scripts within its local part or a domain label (look-alike letters)")
			}
		}
		return s, norm.NFC.String(cases.Fold().String(s)), nil
	case coffer.TypePhone:
		d := digits(s)
		if !phoneRE.MatchString(s) || len(d) < 7 || len(d) > 15 {
			return "", "", invalid(f.Name, "must be a phone number")
		}
		if strings.HasPrefix(s, "+") {
			d = "+" + d
		}
		return s, d, nil
	case coffer.TypeCardNumber:
		d := digits(s)
		for _, r := range s {
			if !(r >= '0' && r <= '9') && r != ' ' && r != '-' {
				return "", "", invalid(f.Name, "must be a card number")
			}
		}
		if len(d) < 12 || len(d) > 19 || !Luhn(d) {
			return "", "", invalid(f.Name, "must be a card number that passes the Luhn check")
		}
		return s, d, nil
	case coffer.TypeSSN:
		m := ssnRE.FindStringSubmatch(s)
		if m == nil || !validSSN(m[1], m[2], m[3]) {
			return "", "", invalid(f.Name, "must be a valid SSN")
		}
		return m[1] + "-" + m[2] + "-" + m[3], m[1] + m[2] + m[3], nil
	case coffer.TypeDate:
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return "", "", invalid(f.Name, "must be a date (YYYY-MM-DD)")
		}
		d := t.Format(time.DateOnly)
		return d, d, nil
	}
	return "", "", invalid(f.Name, "has an unknown type")
}

// LegacyIndexForm is the index form a value had before text was
// normalised (an email lowercased by simple mapping, a string as given),
// or "" where it cannot differ from today's: entries filed then are found
// until a reindex (after an index key rotation) files them anew.
func LegacyIndexForm(f coffer.Field, raw []byte) string {
	if f.Type != coffer.TypeString && f.Type != coffer.TypeEmail {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	s = strings.TrimSpace(s)
	if f.Type == coffer.TypeEmail {
		s = strings.ToLower(s)
	}
	return s
}

// scriptSets are the combinations of scripts one part of an email may
// mix (Unicode TS #39's "highly restrictive" level): Latin with the
// scripts written beside it in Japanese, Chinese and Korean.
var scriptSets = [][]string{
	{"Latin", "Han", "Hiragana", "Katakana"},
	{"Latin", "Han", "Bopomofo"},
	{"Latin", "Han", "Hangul"},
}

// mixesScripts reports whether the local part or a domain label of email
// address s holds letters of scripts no scriptSets entry allows together.
// Digits, punctuation and marks (scripts Common and Inherited) belong to
// any script.
func mixesScripts(s string) bool {
	at := strings.LastIndexByte(s, '@')
	parts := append([]string{s[:at]}, strings.Split(s[at+1:], ".")...)
	for _, p := range parts {
		seen := map[string]bool{}
		for _, r := range p {
			if sc := scriptOf(r); sc != "" {
				seen[sc] = true
			}
		}
		if len(seen) > 1 && !allowedTogether(seen) {
			return true
		}
	}
	return false
}

func allowedTogether(seen map[string]bool) bool {
	for _, set := range scriptSets {
		n := 0
		for _, sc := range set {
			if seen[sc] {
				n++
			}
		}
		if n == len(seen) {
			return true
		}
	}
	return false
}

// scriptOf names the script of r, "" for Common and Inherited.
func scriptOf(r rune) string {
	if r < utf8.RuneSelf {
		if ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return "Latin"
		}
		return ""
	}
	if unicode.In(r, unicode.Common, unicode.Inherited) {
		return ""
	}
	for name, table := range unicode.Scripts {
		if unicode.Is(table, r) {
			return name
		}
	}
	return ""
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Luhn reports whether a string of digits passes the Luhn check.
func Luhn(d string) bool {
	sum, alt := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if alt {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		alt = !alt
	}
	return len(d) > 0 && sum%10 == 0
}

func validSSN(area, group, serial string) bool {
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// Encode renders a stored value in an answer: integers as JSON
// numbers, everything else as strings.
func Encode(f coffer.Field, v string) any {
	if f.Type == coffer.TypeInteger {
		return json.Number(v)
	}
	return v
}

// NormalizeValue validates a string value of a field type and returns its
// stored and its canonical (index) forms. Errors name the type, never the
// value.
func NormalizeValue(typ, value string) (stored, canonical string, err error) {
	if typ != coffer.TypeInteger {
		return normalizeString(coffer.Field{Name: "value", Type: typ}, value)
	}
	raw, err := json.Marshal(value)
	if err != nil {
		return "", "", invalid("value", "must be a string")
	}
	return Normalize(coffer.Field{Name: "value", Type: typ}, raw)
}
