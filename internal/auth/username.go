package auth

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// MaxUsernameLen bounds a username, in bytes after normalisation.
const MaxUsernameLen = 128

// ErrBadUsername is wrapped by [Username] for a name that cannot be a
// username; its text says why, never the name.
var ErrBadUsername = errors.New("auth: username")

// Username returns the form of name to store and show, and the key that
// identifies its account: two names with one key are one account.
//
// The name is trimmed, then each space-separated part is enforced under
// the PRECIS username profiles of RFC 8265 (§3.5 allows such parts):
// display under UsernameCasePreserved (width mapping, NFC), key under
// UsernameCaseMapped (also case folding), parts joined by one space. A
// name whose letters mix scripts, other than the combinations a language
// writes together (Latin with Han and Japanese kana, Bopomofo or Hangul),
// is refused: "аlice" with a Cyrillic а is not a name but a look-alike.
// In the key, each letter of another script that looks like a Latin one
// is mapped to it (a small table of the Cyrillic and Greek look-alikes of
// UTS #39), so a whole-script look-alike such as Cyrillic "асе" has the
// key of "ace" and cannot sit beside it.
//
// So "alice", "Alice", "alice " and "ＡＬＩＣＥ" share one key; "аlice"
// is refused.
func Username(name string) (display, key string, err error) {
	fail := func(why string) (string, string, error) { return "", "", fmt.Errorf("%w %s", ErrBadUsername, why) }
	if !utf8.ValidString(name) || len(name) > 4*MaxUsernameLen {
		return fail("must be valid UTF-8 of at most 128 bytes")
	}
	parts := strings.Fields(name)
	if len(parts) == 0 {
		return fail("must not be empty")
	}
	disp := make([]string, len(parts))
	keys := make([]string, len(parts))
	for i, p := range parts {
		d, err1 := precis.UsernameCasePreserved.String(p)
		k, err2 := precis.UsernameCaseMapped.String(p)
		if err1 != nil || err2 != nil {
			return fail("may hold only letters, digits and symbols (PRECIS, RFC 8265)")
		}
		disp[i], keys[i] = d, k
	}
	display, key = strings.Join(disp, " "), strings.Join(keys, " ")
	if len(display) > MaxUsernameLen || len(key) > MaxUsernameLen {
		return fail("must be at most 128 bytes")
	}
	if mixedScripts(key) {
		return fail("must not mix the letters of different scripts")
	}
	return display, skeleton(key), nil
}

// UsernameKey returns the account key of name, or "" when name cannot be
// a username (see [Username]).
func UsernameKey(name string) string {
	_, k, err := Username(name)
	if err != nil {
		return ""
	}
	return k
}

// scriptSets are the scripts a name may combine (UTS #39 "highly
// restrictive"): one script alone, or one of these sets.
var scriptSets = [][]string{
	{"Latin", "Han", "Hiragana", "Katakana"},
	{"Latin", "Han", "Bopomofo"},
	{"Latin", "Han", "Hangul"},
}

// mixedScripts reports whether the letters of s come from scripts that no
// single language writes together. Common and Inherited characters
// (digits, punctuation, combining marks) belong to every script.
func mixedScripts(s string) bool {
	seen := map[string]bool{}
	for _, r := range s {
		if sc := scriptOf(r); sc != "" {
			seen[sc] = true
		}
	}
	if len(seen) <= 1 {
		return false
	}
	for _, set := range scriptSets {
		all := true
		for sc := range seen {
			if !contains(set, sc) {
				all = false
				break
			}
		}
		if all {
			return false
		}
	}
	return true
}

func contains(set []string, s string) bool {
	for _, x := range set {
		if x == s {
			return true
		}
	}
	return false
}

// scriptOf returns the name of r's script, or "" for Common and Inherited.
func scriptOf(r rune) string {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
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

// lookalikes maps lower-case Cyrillic, Greek and Latin-extension letters
// to the basic Latin letter they are confused with (from the UTS #39
// confusables table, the letters that render alike in common fonts).
var lookalikes = map[rune]rune{
	// Cyrillic
	'а': 'a', 'в': 'b', 'с': 'c', 'ԁ': 'd', 'е': 'e', 'һ': 'h', 'і': 'i', 'ӏ': 'l', 'ј': 'j', 'к': 'k',
	'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'ԛ': 'q', 'г': 'r', 'ѕ': 's', 'т': 't', 'ц': 'u', 'ѵ': 'v',
	'ԝ': 'w', 'х': 'x', 'у': 'y', 'ӡ': 'z', 'ь': 'b',
	// Greek
	'α': 'a', 'β': 'b', 'ϲ': 'c', 'ε': 'e', 'η': 'n', 'ι': 'i', 'ϳ': 'j', 'κ': 'k', 'ν': 'v', 'ο': 'o',
	'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'γ': 'y', 'ω': 'w',
	// Latin extensions
	'ı': 'i', 'ɑ': 'a', 'ɡ': 'g', 'ʟ': 'l', 'ɩ': 'i', 'ᴏ': 'o',
}

// skeleton maps each look-alike letter of s to its Latin counterpart.
func skeleton(s string) string {
	return strings.Map(func(r rune) rune {
		if l, ok := lookalikes[r]; ok {
			return l
		}
		return r
	}, s)
}
