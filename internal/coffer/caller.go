package coffer

import "unicode/utf8"

// Caller is who asks a use case and from where; Note collects what the
// call did and what was decided, for the request's audit event.
type Caller struct {
	Principal *Principal
	IP        string
	Note      *AccessNote
}

// PrincipalID returns the caller's principal id, "" for none.
func (c Caller) PrincipalID() string {
	if c.Principal == nil {
		return ""
	}
	return c.Principal.ID
}

// Printable reports whether s is valid UTF-8 without control characters:
// what a name, an id or an attribute submitted by a caller must be.
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
