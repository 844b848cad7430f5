package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Mask names.
const (
	Card    = "card"
	Email   = "email"
	Phone   = "phone"
	SSN     = "ssn"
	Name    = "name"
	Redact  = "redact"
	Hash    = "hash"
	Partial = "partial" // used as partial(first,last,char)
)

// Redacted is what the redact mask shows.
const Redacted = "[REDACTED]"

// maxPartial bounds first and last of partial(first,last,char).
const maxPartial = 64

// ErrUnknownMask means a mask name is not one this package knows or a
// partial(…) is malformed.
var ErrUnknownMask = errors.New("mask: unknown mask")

// Default returns the mask of a field type: card_number→card, email→email,
// phone→phone, ssn→ssn, anything else→redact.
func Default(fieldType string) string {
	switch fieldType {
	case "card_number":
		return Card
	case "email":
		return Email
	case "phone":
		return Phone
	case "ssn":
		return SSN
	}
	return Redact
}

// Spec is a parsed mask name. The zero Spec redacts.
type Spec struct {
	kind        string
	first, last int
	char        rune
}

// Parse parses a mask name once, so that it can be applied many times.
// Errors wrap ErrUnknownMask.
func Parse(name string) (Spec, error) {
	switch name {
	case Card, Email, Phone, SSN, Name, Redact, Hash:
		return Spec{kind: name}, nil
	}
	args, ok := strings.CutPrefix(name, Partial+"(")
	if !ok {
		return Spec{}, ErrUnknownMask
	}
	args, ok = strings.CutSuffix(args, ")")
	if !ok {
		return Spec{}, ErrUnknownMask
	}
	parts := strings.Split(args, ",")
	if len(parts) != 2 && len(parts) != 3 {
		return Spec{}, ErrUnknownMask
	}
	s := Spec{kind: Partial, char: '*'}
	var err error
	if s.first, err = count(parts[0]); err != nil {
		return Spec{}, err
	}
	if s.last, err = count(parts[1]); err != nil {
		return Spec{}, err
	}
	if len(parts) == 3 {
		c := strings.TrimSpace(parts[2])
		r, size := utf8.DecodeRuneInString(c)
		if size == 0 || size != len(c) || r == utf8.RuneError || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return Spec{}, ErrUnknownMask
		}
		s.char = r
	}
	return s, nil
}

func count(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > maxPartial {
		return 0, ErrUnknownMask
	}
	return n, nil
}

// ValidName returns nil when name is a mask a collection may declare, and
// an error wrapping ErrUnknownMask otherwise.
func ValidName(name string) error {
	_, err := Parse(name)
	return err
}

// String returns the spec's mask name.
func (s Spec) String() string {
	switch s.kind {
	case "":
		return Redact
	case Partial:
		return Partial + "(" + strconv.Itoa(s.first) + "," + strconv.Itoa(s.last) + "," + string(s.char) + ")"
	}
	return s.kind
}

// Masker applies masks; it holds the key of the hash mask. It is safe for
// concurrent use.
type Masker struct {
	hashKey []byte
}

// New returns a Masker whose hash mask is keyed by hashKey (copied). With an
// empty key the hash mask redacts.
func New(hashKey []byte) *Masker {
	return &Masker{hashKey: append([]byte(nil), hashKey...)}
}

// Mask masks value with the mask called name; an unknown name redacts
// (fail closed). Use Parse and Apply to parse a name once.
func (m *Masker) Mask(name, value string) string {
	s, err := Parse(name)
	if err != nil {
		return Redacted
	}
	return m.Apply(s, value)
}

// Apply masks value with s.
func (m *Masker) Apply(s Spec, value string) string {
	switch s.kind {
	case Card:
		return keepLastDigits(value, cardKeep(value), isCardSep)
	case SSN:
		return keepLastDigits(value, ssnKeep(value), isCardSep)
	case Phone:
		return keepLastDigits(value, phoneKeep(value), isPhoneSep)
	case Email:
		return email(value)
	case Name:
		return initials(value)
	case Hash:
		return m.hash(value)
	case Partial:
		return partial(value, s.first, s.last, s.char)
	}
	return Redacted
}

// Apply masks value with the mask called name without a hash key: errors
// wrap ErrUnknownMask for an unknown name, and the hash mask redacts.
func Apply(name, value string) (string, error) {
	s, err := Parse(name)
	if err != nil {
		return "", err
	}
	var m Masker
	return m.Apply(s, value), nil
}

func (m *Masker) hash(value string) string {
	if len(m.hashKey) == 0 {
		return Redacted
	}
	h := hmac.New(sha256.New, m.hashKey)
	h.Write(PseudonymInput(value))
	return Pseudonym(h.Sum(nil))
}

// PseudonymInput is what the hash mask MACs for value: a label that keeps
// the MAC apart from any other use of its key, then the value.
func PseudonymInput(value string) []byte {
	return append([]byte("coffer/mask/hash/v1\x00"), value...)
}

// Pseudonym is the hash mask's output for mac, an HMAC-SHA256 of
// PseudonymInput(value): "h:" and its first 16 hex digits.
func Pseudonym(mac []byte) string {
	if len(mac) < 8 {
		return Redacted
	}
	return "h:" + hex.EncodeToString(mac[:8])
}

func isCardSep(r rune) bool  { return r == ' ' || r == '-' }
func isPhoneSep(r rune) bool { return strings.ContainsRune("+-. ()", r) }

func digits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n
}

func cardKeep(s string) int {
	if digits(s) >= 12 {
		return 4
	}
	return 0
}

func ssnKeep(s string) int {
	if digits(s) >= 9 {
		return 4
	}
	return 0
}

func phoneKeep(s string) int {
	switch n := digits(s); {
	case n >= 10:
		return 4
	case n >= 7:
		return 3
	case n >= 5:
		return 2
	}
	return 0
}

// keepLastDigits shows the last keep ASCII digits and the separators and
// turns every other rune into "*".
func keepLastDigits(s string, keep int, sep func(rune) bool) string {
	rs := []rune(s)
	out := make([]rune, len(rs))
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		switch {
		case r >= '0' && r <= '9' && keep > 0:
			out[i] = r
			keep--
		case sep(r):
			out[i] = r
		default:
			out[i] = '*'
		}
	}
	return string(out)
}

// label shows the first rune of a part of two or more runes.
func label(b *strings.Builder, part string) {
	n := utf8.RuneCountInString(part)
	if n == 0 {
		return
	}
	if n == 1 {
		b.WriteByte('*')
		return
	}
	r, _ := utf8.DecodeRuneInString(part)
	b.WriteRune(r)
	b.WriteString(strings.Repeat("*", n-1))
}

func email(s string) string {
	var b strings.Builder
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		label(&b, s)
		return b.String()
	}
	label(&b, s[:at])
	b.WriteByte('@')
	labels := strings.Split(s[at+1:], ".")
	for i, l := range labels {
		if i > 0 {
			b.WriteByte('.')
		}
		if i == len(labels)-1 && i > 0 {
			b.WriteString(strings.ToValidUTF8(l, "\uFFFD"))
			continue
		}
		label(&b, l)
	}
	return b.String()
}

func initials(s string) string {
	var b strings.Builder
	for _, w := range strings.Fields(s) {
		r, _ := utf8.DecodeRuneInString(w)
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToUpper(r))
		b.WriteByte('.')
	}
	return b.String()
}

func partial(s string, first, last int, char rune) string {
	rs := []rune(s)
	if first+last >= len(rs) {
		first, last = 0, 0
	}
	for i := first; i < len(rs)-last; i++ {
		rs[i] = char
	}
	return string(rs)
}
