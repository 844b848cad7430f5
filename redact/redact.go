package redact

import (
	"strings"

	"github.com/cofferhq/coffer/internal/mask"
)

// Mode says how Redact replaces a finding.
type Mode int

const (
	// ModeMask replaces a finding with its mask: card numbers keep their
	// last four digits, emails their initials and TLD, phones their last
	// digits, SSNs their last four, IBANs their country code and last four;
	// other types get their placeholder.
	ModeMask Mode = iota
	// ModePlaceholder replaces a finding with "[TYPE]", e.g. "[EMAIL]".
	ModePlaceholder
)

// Placeholder returns the placeholder of a finding type: "[EMAIL]" for
// "email".
func Placeholder(typ string) string {
	return "[" + strings.ToUpper(typ) + "]"
}

// maskSpec returns the mask of a finding type, if one fits.
func maskSpec(typ string) (mask.Spec, bool) {
	var name string
	switch typ {
	case TypeCard:
		name = mask.Card
	case TypeEmail:
		name = mask.Email
	case TypePhone:
		name = mask.Phone
	case TypeSSN:
		name = mask.SSN
	case TypeIBAN:
		name = "partial(2,4,*)"
	default:
		return mask.Spec{}, false
	}
	s, err := mask.Parse(name)
	return s, err == nil
}

// Redact returns text with every finding of Find replaced as mode says.
func Redact(text string, mode Mode) string {
	return redactFindings(text, Find(text), mode)
}

func redactFindings(text string, fs []Finding, mode Mode) string {
	if len(fs) == 0 {
		return text
	}
	var (
		b      strings.Builder
		masker mask.Masker // no hash key: the hash mask is never used here
		prev   int
	)
	b.Grow(len(text))
	for _, f := range fs {
		b.WriteString(text[prev:f.Start])
		v := text[f.Start:f.End]
		if spec, ok := maskSpec(f.Type); ok && mode == ModeMask {
			b.WriteString(masker.Apply(spec, v))
		} else {
			b.WriteString(Placeholder(f.Type))
		}
		prev = f.End
	}
	b.WriteString(text[prev:])
	return b.String()
}
