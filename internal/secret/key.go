package secret

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Redacted is what a [Key] shows in place of its bytes, in every format.
const Redacted = "[REDACTED]"

// Key holds secret key bytes.
//
// A Key is a handle: copies of a Key share the same bytes, so [Key.Zero] on
// any copy clears them for all. Use [NewKey] to make an independent key.
// The zero Key holds no bytes.
//
// Reading a Key from several goroutines is safe; [Key.Zero] must not run
// concurrently with any other use of the same bytes (guard both with a lock).
//
// Key is not comparable: == does not compile; use [Key.Equal]. Its bytes sit
// behind a pointer, so even a struct that holds a Key in an unexported field
// prints an address, never the bytes, when formatted with fmt.
type Key struct {
	_ [0]func() // makes Key incomparable, so == cannot leak timing or be misused
	p *keyBytes
}

// keyBytes holds the bytes two pointers away from Key: fmt dereferences at
// most one pointer of a value it cannot call methods on (an unexported
// field), so a Key inside another struct prints as addresses.
type keyBytes struct {
	b *[]byte
}

func newKeyBytes(b []byte) *keyBytes { return &keyBytes{b: &b} }

// raw returns the key's own bytes (nil for none). Never hand them out.
func (k Key) raw() []byte {
	if k.p == nil || k.p.b == nil {
		return nil
	}
	return *k.p.b
}

// NewKey returns a Key holding a copy of b. The caller may clear b afterwards.
func NewKey(b []byte) Key {
	c := make([]byte, len(b))
	copy(c, b)
	return Key{p: newKeyBytes(c)}
}

// ErrKeySize is returned by [Random] for a non-positive length.
var ErrKeySize = errors.New("secret: key length must be positive")

// Random returns a new Key of n bytes read from r, which should be
// crypto/rand.Reader outside tests. It fails if r cannot supply n bytes.
func Random(r io.Reader, n int) (Key, error) {
	if n <= 0 {
		return Key{}, ErrKeySize
	}
	if r == nil {
		return Key{}, errors.New("secret: nil random source")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		clear(b)
		return Key{}, fmt.Errorf("secret: read random key: %w", err)
	}
	return Key{p: newKeyBytes(b)}, nil
}

// Bytes returns a copy of the key bytes, or nil for a zero or zeroed Key.
// The caller owns the copy and should clear it when done.
func (k Key) Bytes() []byte {
	r := k.raw()
	if r == nil {
		return nil
	}
	c := make([]byte, len(r))
	copy(c, r)
	return c
}

// Len returns the number of key bytes (0 for a zero or zeroed Key).
func (k Key) Len() int {
	return len(k.raw())
}

// IsZero reports whether k holds no bytes: the zero Key or a zeroed one.
func (k Key) IsZero() bool { return k.Len() == 0 }

// Equal reports whether k and o hold the same bytes, in time that depends
// only on their lengths. Two keys without bytes are equal.
func (k Key) Equal(o Key) bool {
	return subtle.ConstantTimeCompare(k.raw(), o.raw()) == 1
}

// Zero overwrites the key bytes with zeros and drops them, for this Key and
// every copy of it. Using the Key afterwards sees no bytes.
func (k Key) Zero() {
	if k.p == nil || k.p.b == nil {
		return
	}
	clear(*k.p.b)
	*k.p.b = nil
}

// String implements fmt.Stringer. It never returns the key bytes.
func (k Key) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v). It never returns the key bytes.
func (k Key) GoString() string { return "secret.Key(" + Redacted + ")" }

// Format implements fmt.Formatter so that every verb (%v %+v %#v %s %q %x
// %X %d …) prints the redaction, never the bytes.
func (k Key) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, k.GoString())
		return
	}
	_, _ = io.WriteString(f, Redacted)
}

// MarshalJSON implements json.Marshaler: a Key encodes as "[REDACTED]".
func (k Key) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (YAML, XML, map keys): a Key
// encodes as [REDACTED].
func (k Key) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue implements slog.LogValuer: a Key logs as [REDACTED].
func (k Key) LogValue() slog.Value { return slog.StringValue(Redacted) }
