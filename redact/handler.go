package redact

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Redacted replaces the value of an attribute whose key is sensitive.
const Redacted = "[REDACTED]"

// DefaultSensitiveKeys returns the attribute keys whose values NewHandler
// replaces by default. The slice is new on every call, so callers may
// append to it.
func DefaultSensitiveKeys() []string {
	return []string{
		"password", "passwd", "pwd", "passphrase", "secret", "token",
		"access_token", "refresh_token", "id_token", "client_secret",
		"authorization", "cookie", "set_cookie", "api_key", "apikey",
		"private_key", "session", "ssn", "card_number", "cvv", "cvc",
	}
}

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	// Mode says how findings in messages and string values are replaced.
	Mode Mode
	// SensitiveKeys lists attribute keys whose whole value is replaced by
	// Redacted. Matching ignores ASCII case, "-" and "_", and also hits
	// keys that end with a listed key ("db_password" matches "password").
	// Nil means DefaultSensitiveKeys(); an empty non-nil slice turns key
	// matching off.
	SensitiveKeys []string
	// KeepTypes lists finding types (TypeIPv4, …) left as they are in
	// messages and values, for logs where they are operational rather than
	// personal: a server's own listen and peer addresses, say. Attribute
	// keys in SensitiveKeys are redacted whatever their value.
	KeepTypes []string
}

// handler is the redacting slog.Handler.
type handler struct {
	next slog.Handler
	mode Mode
	keys []string        // normalised sensitive keys
	keep map[string]bool // finding types left alone
}

// NewHandler returns a slog.Handler that redacts, then passes records to
// next. It finds sensitive values (see Find) in the message and in every
// string attribute, through groups, and in the text of errors,
// fmt.Stringers, LogValuers and other values that print with findings; and
// it replaces the value of any attribute whose key is sensitive with
// Redacted. Attributes added with WithAttrs are redacted once, when added.
func NewHandler(next slog.Handler, opts HandlerOptions) slog.Handler {
	keys := opts.SensitiveKeys
	if keys == nil {
		keys = DefaultSensitiveKeys()
	}
	h := &handler{next: next, mode: opts.Mode}
	if len(opts.KeepTypes) > 0 {
		h.keep = make(map[string]bool, len(opts.KeepTypes))
		for _, t := range opts.KeepTypes {
			h.keep[t] = true
		}
	}
	for _, k := range keys {
		if n := normKey(k); n != "" {
			h.keys = append(h.keys, n)
		}
	}
	return h
}

// normKey lower-cases ASCII letters and drops "-", "_", "." and spaces.
func normKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '-' || c == '_' || c == '.' || c == ' ':
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (h *handler) sensitive(key string) bool {
	if len(h.keys) == 0 {
		return false
	}
	k := normKey(key)
	for _, s := range h.keys {
		if strings.HasSuffix(k, s) {
			return true
		}
	}
	return false
}

// Enabled reports whether next handles records at level.
func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle redacts r and passes it to next.
func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs redacts attrs and adds them to next.
func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	return &handler{next: h.next.WithAttrs(red), mode: h.mode, keys: h.keys, keep: h.keep}
}

// WithGroup opens a group on next.
func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), mode: h.mode, keys: h.keys, keep: h.keep}
}

func (h *handler) attr(a slog.Attr) slog.Attr {
	if h.sensitive(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.redact(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]slog.Attr, len(g))
		for i, x := range g {
			red[i] = h.attr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.redact(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, h.redact(x.String()))
		case []byte:
			return slog.String(a.Key, h.redact(string(x)))
		default:
			// Keep the value's type unless its printed form holds a finding.
			s := fmt.Sprintf("%+v", x)
			if fs := h.find(s); len(fs) > 0 {
				return slog.String(a.Key, redactFindings(s, fs, h.mode))
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// find is Find without the findings of kept types.
func (h *handler) find(text string) []Finding {
	fs := Find(text)
	if len(h.keep) == 0 || len(fs) == 0 {
		return fs
	}
	out := fs[:0]
	for _, f := range fs {
		if !h.keep[f.Type] {
			out = append(out, f)
		}
	}
	return out
}

// redact is Redact without the findings of kept types.
func (h *handler) redact(text string) string {
	return redactFindings(text, h.find(text), h.mode)
}
