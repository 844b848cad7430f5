package transit

import "log/slog"

// redacted is what a Plaintext shows in place of its value.
const redacted = "[redacted]"

// Plaintext is a base64 value that must not reach a log: fmt and log/slog
// print it as "[redacted]". encoding/json writes and reads the value
// itself, as the request and the response need it.
type Plaintext string

// String implements fmt.Stringer; it never shows the value.
func (Plaintext) String() string { return redacted }

// GoString implements fmt.GoStringer; it never shows the value.
func (Plaintext) GoString() string { return redacted }

// LogValue implements slog.LogValuer; it never shows the value.
func (Plaintext) LogValue() slog.Value { return slog.StringValue(redacted) }

// Reveal returns the value, for the one place that must send it.
func (p Plaintext) Reveal() string { return string(p) }

// Item is one value to encrypt: Plaintext and the optional Context are
// standard base64.
type Item struct {
	Plaintext Plaintext `json:"plaintext"`
	Context   Plaintext `json:"context,omitempty"`
}

// CiphertextItem is one value to decrypt or rewrap, with the Context it
// was encrypted with (standard base64, optional).
type CiphertextItem struct {
	Ciphertext string    `json:"ciphertext"`
	Context    Plaintext `json:"context,omitempty"`
}

// Ciphertext is one encrypted value and the key version that encrypted it.
type Ciphertext struct {
	Ciphertext string `json:"ciphertext"`
	KeyVersion uint32 `json:"key_version"`
}

// Decrypted is one decrypted value, in standard base64.
type Decrypted struct {
	Plaintext Plaintext `json:"plaintext"`
}

// LogValue implements slog.LogValuer: a JSON log handler would otherwise
// marshal the values.
func (Item) LogValue() slog.Value { return slog.StringValue(redacted) }

// LogValue implements slog.LogValuer, hiding the context.
func (it CiphertextItem) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ciphertext", it.Ciphertext), slog.String("context", redacted))
}

// LogValue implements slog.LogValuer: a JSON log handler would otherwise
// marshal the value.
func (Decrypted) LogValue() slog.Value { return slog.StringValue(redacted) }
