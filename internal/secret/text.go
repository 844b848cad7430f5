package secret

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
)

// Password is a secret someone proves themselves with — a user's password,
// a client secret, a TOTP or recovery code — as it crosses a package
// boundary. Like [Key] it is not comparable (== does not compile; use
// [Password.Equal], constant time) and redacts itself in every format
// (fmt verbs, JSON, text encoders, log/slog). [Password.Reveal] is the one
// way to the characters, for the hash or check that needs them.
//
// It decodes from a JSON string, so a request body can hold one.
type Password struct {
	_ [0]func() // not comparable
	p *string
}

// NewPassword wraps s.
func NewPassword(s string) Password { return Password{p: &s} }

// Reveal returns the secret's characters. Call it only where they are
// hashed, checked or sent, never to print or log them.
func (p Password) Reveal() string {
	if p.p == nil {
		return ""
	}
	return *p.p
}

// IsZero reports whether p holds no characters.
func (p Password) IsZero() bool { return p.Reveal() == "" }

// Equal reports whether p and o hold the same characters, in time that
// depends only on their lengths.
func (p Password) Equal(o Password) bool {
	return subtle.ConstantTimeCompare([]byte(p.Reveal()), []byte(o.Reveal())) == 1
}

// String implements fmt.Stringer. It never returns the secret.
func (p Password) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v). It never returns the secret.
func (p Password) GoString() string { return "secret.Password(" + Redacted + ")" }

// Format prints the redaction for every verb.
func (p Password) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, p.GoString())
		return
	}
	_, _ = io.WriteString(f, Redacted)
}

// MarshalJSON encodes a Password as "[REDACTED]".
func (p Password) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText encodes a Password as [REDACTED].
func (p Password) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// UnmarshalJSON reads a Password from a JSON string.
func (p *Password) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("secret: password: a JSON string is required")
	}
	*p = NewPassword(s)
	return nil
}

// LogValue logs a Password as [REDACTED].
func (p Password) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Value is a plaintext value in transit between packages — a record
// field, a value to tokenize, a transit plaintext — that must never be
// printed or logged on the way. Not comparable; redacted in every format;
// [Value.Reveal] hands out the bytes (not a copy: hot paths stay
// allocation-free, and the caller must not keep them past the call).
type Value struct {
	_ [0]func() // not comparable
	p *[]byte
}

// NewValue wraps b (not copied).
func NewValue(b []byte) Value { return Value{p: &b} }

// Reveal returns the value's bytes (not a copy).
func (v Value) Reveal() []byte {
	if v.p == nil {
		return nil
	}
	return *v.p
}

// Len returns the number of bytes.
func (v Value) Len() int { return len(v.Reveal()) }

// Equal reports whether v and o hold the same bytes, in time that depends
// only on their lengths.
func (v Value) Equal(o Value) bool { return subtle.ConstantTimeCompare(v.Reveal(), o.Reveal()) == 1 }

// String implements fmt.Stringer. It never returns the value.
func (v Value) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v). It never returns the value.
func (v Value) GoString() string { return "secret.Value(" + Redacted + ")" }

// Format prints the redaction for every verb.
func (v Value) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, v.GoString())
		return
	}
	_, _ = io.WriteString(f, Redacted)
}

// MarshalJSON encodes a Value as "[REDACTED]".
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText encodes a Value as [REDACTED].
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue logs a Value as [REDACTED].
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }
