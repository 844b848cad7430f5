package fieldpath

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen bounds a path's length, and MaxSegments its segments: a path is
// configuration, never data, and a long one is a mistake.
const (
	MaxLen      = 512
	MaxSegments = 32
)

// ErrSyntax is wrapped by every Parse error.
var ErrSyntax = errors.New("fieldpath: bad path")

// Path is a parsed field path: names and array wildcards, in order.
type Path []Segment

// Segment is one step: an object member by name, or every array element.
type Segment struct {
	// Name is the member's name; empty for an array wildcard.
	Name string
	// All marks "[*]": every element of an array.
	All bool
}

// Parse parses a path like "card.number", "items[*].card" or "[*]". A name
// is one or more characters other than '.', '[', ']', '*', control
// characters and spaces; "[*]" follows a name or starts the path; a '.'
// separates names.
func Parse(s string) (Path, error) {
	fail := func(format string, args ...any) (Path, error) {
		return nil, fmt.Errorf("%w %q: %s", ErrSyntax, clip(s), fmt.Sprintf(format, args...))
	}
	switch {
	case s == "":
		return fail("empty")
	case len(s) > MaxLen:
		return fail("longer than %d bytes", MaxLen)
	case !utf8.ValidString(s):
		return fail("not UTF-8")
	}
	var p Path
	i := 0
	needName := false // after a '.'
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], "[*]"):
			if needName {
				return fail("'.' must be followed by a name")
			}
			p = append(p, Segment{All: true})
			i += 3
		case s[i] == '.':
			if len(p) == 0 || needName {
				return fail("empty name")
			}
			needName = true
			i++
		default:
			if len(p) > 0 && !needName {
				return fail("a name must follow '.'")
			}
			j := i
			for j < len(s) {
				r, n := utf8.DecodeRuneInString(s[j:])
				if r == '.' || r == '[' {
					break
				}
				if r == ']' || r == '*' || r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
					return fail("a name may not hold %q", r)
				}
				j += n
			}
			if j == i {
				return fail("'[' must start \"[*]\"")
			}
			p = append(p, Segment{Name: s[i:j]})
			needName = false
			i = j
		}
		if len(p) > MaxSegments {
			return fail("more than %d segments", MaxSegments)
		}
	}
	if needName {
		return fail("ends with '.'")
	}
	return p, nil
}

// String prints p back in the form Parse reads: Parse(p.String()) is p.
func (p Path) String() string {
	var b strings.Builder
	for i, s := range p {
		if s.All {
			b.WriteString("[*]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.Name)
	}
	return b.String()
}

// NameMatches reports whether a JSON member or form key name matches the
// segment's name. Names match without regard to case (Unicode simple
// folding, as strings.EqualFold): many decoders (Go's encoding/json among
// them) bind a member to a field whatever its case, so a relay matching
// exactly could be bypassed by writing "Card" for "card".
func (s Segment) NameMatches(name string) bool {
	return !s.All && strings.EqualFold(s.Name, name)
}

// FormKey splits a form key into segments the way web frameworks read
// nested form keys: "card.number", "card[number]" and "Card[Number]" are
// card → number; a numeric or empty bracket ("items[0][card]",
// "items[][card]") and a numeric dotted name ("items.0.card") are an array
// wildcard. Unbalanced brackets keep the key as one name.
func FormKey(key string) Path {
	var p Path
	add := func(name string) {
		if name == "" || allDigits(name) {
			p = append(p, Segment{All: true})
			return
		}
		p = append(p, Segment{Name: name})
	}
	head, rest, hasBracket := strings.Cut(key, "[")
	for _, n := range strings.Split(head, ".") {
		if n == "" {
			return Path{{Name: key}}
		}
		if allDigits(n) && len(p) > 0 {
			p = append(p, Segment{All: true})
			continue
		}
		p = append(p, Segment{Name: n})
	}
	if !hasBracket {
		return p
	}
	rest = "[" + rest
	for rest != "" {
		if rest[0] != '[' {
			return Path{{Name: key}}
		}
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return Path{{Name: key}}
		}
		add(rest[1:end])
		rest = rest[end+1:]
	}
	return p
}

// Matches reports whether the form key path k stands for the field path
// p: the same length, names matching as NameMatches says, wildcards where
// p has them.
func (p Path) Matches(k Path) bool {
	if len(p) != len(k) {
		return false
	}
	for i := range p {
		if p[i].All != k[i].All {
			return false
		}
		if !p[i].All && !p[i].NameMatches(k[i].Name) {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
