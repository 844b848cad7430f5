package secret

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// keyBytes is recognisable in any printed form: raw, hex, decimal, base64-ish.
var testBytes = []byte{0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0x42, 0x99}

// leaks reports whether s shows testBytes in any common textual form.
func leaks(s string) bool {
	forms := []string{
		string(testBytes),
		hex.EncodeToString(testBytes),
		strings.ToUpper(hex.EncodeToString(testBytes)),
		fmt.Sprint([]int{222, 173, 190, 239}), // [222 173 190 239]
		"222 173 190 239",
		"0xde",
		"3q2+7xM3Qpk", // base64 prefix
	}
	for _, f := range forms {
		if strings.Contains(s, strings.Trim(f, "[]")) {
			return true
		}
	}
	return false
}

func TestKeyIsNotComparable(t *testing.T) {
	if reflect.TypeFor[Key]().Comparable() {
		t.Fatal("Key is comparable; == would compile")
	}
}

func TestFormatNeverPrintsBytes(t *testing.T) {
	k := NewKey(testBytes)
	type holder struct {
		Exported Key
		hidden   Key
		Ptr      *Key
	}
	h := holder{Exported: k, hidden: k, Ptr: &k}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%10v", "%-v"}
	for _, verb := range verbs {
		for name, v := range map[string]any{
			"value":   k,
			"pointer": &k,
			"struct":  h,
			"slice":   []Key{k},
			"map":     map[string]Key{"k": k},
		} {
			t.Run(name+"/"+verb, func(t *testing.T) {
				got := fmt.Sprintf(verb, v)
				if leaks(got) {
					t.Fatalf("Sprintf(%q) = %q leaks key bytes", verb, got)
				}
			})
		}
	}
	if got := fmt.Sprintf("%v", k); got != Redacted {
		t.Errorf("%%v = %q, want %q", got, Redacted)
	}
	if got := fmt.Sprintf("%#v", k); !strings.Contains(got, Redacted) {
		t.Errorf("%%#v = %q, want it to contain %q", got, Redacted)
	}
	if got := k.String(); got != Redacted {
		t.Errorf("String() = %q", got)
	}
	if err := fmt.Errorf("wrapping %v: %w", k, io.EOF); leaks(err.Error()) {
		t.Errorf("error %q leaks key bytes", err)
	}
}

func TestJSONNeverPrintsBytes(t *testing.T) {
	k := NewKey(testBytes)
	out, err := json.Marshal(struct {
		Key  Key
		Ptr  *Key
		Keys map[string]Key
	}{k, &k, map[string]Key{"a": k}})
	if err != nil {
		t.Fatal(err)
	}
	if leaks(string(out)) {
		t.Fatalf("json %s leaks key bytes", out)
	}
	if !strings.Contains(string(out), `"Key":"[REDACTED]"`) {
		t.Errorf("json %s lacks the redaction", out)
	}
}

func TestSlogNeverPrintsBytes(t *testing.T) {
	k := NewKey(testBytes)
	for name, newHandler := range map[string]func(io.Writer) slog.Handler{
		"json": func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		"text": func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(newHandler(&buf))
			log.Info("made key", "key", k, "ptr", &k, slog.Any("any", k),
				slog.Group("g", "key", k), "struct", struct{ K Key }{k})
			if leaks(buf.String()) {
				t.Fatalf("log line %q leaks key bytes", buf.String())
			}
			if !strings.Contains(buf.String(), Redacted) {
				t.Fatalf("log line %q lacks the redaction", buf.String())
			}
		})
	}
}

func TestNewKeyCopies(t *testing.T) {
	b := bytes.Clone(testBytes)
	k := NewKey(b)
	clear(b)
	if !bytes.Equal(k.Bytes(), testBytes) {
		t.Fatal("NewKey kept the caller's slice")
	}
	out := k.Bytes()
	clear(out)
	if !bytes.Equal(k.Bytes(), testBytes) {
		t.Fatal("Bytes returned the key's own slice")
	}
	if k.Len() != len(testBytes) {
		t.Errorf("Len = %d, want %d", k.Len(), len(testBytes))
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b Key
		want bool
	}{
		{"equal/same bytes", NewKey(testBytes), NewKey(testBytes), true},
		{"equal/both zero", Key{}, Key{}, true},
		{"equal/zero and empty", Key{}, NewKey(nil), true},
		{"unequal/one byte differs", NewKey([]byte{1, 2, 3}), NewKey([]byte{1, 2, 4}), false},
		{"unequal/prefix", NewKey([]byte{1, 2, 3}), NewKey([]byte{1, 2}), false},
		{"unequal/zero and bytes", Key{}, NewKey([]byte{0}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
			if got := tt.b.Equal(tt.a); got != tt.want {
				t.Errorf("reversed Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestZeroClearsEveryCopy(t *testing.T) {
	k := NewKey(testBytes)
	inner := k.raw()
	c := k
	c.Zero()
	if !k.IsZero() || k.Len() != 0 || k.Bytes() != nil {
		t.Fatal("Zero on a copy left the original's bytes")
	}
	if !bytes.Equal(inner, make([]byte, len(testBytes))) {
		t.Fatalf("Zero left %x in memory", inner)
	}
	Key{}.Zero() // must not panic
}

func TestRandom(t *testing.T) {
	t.Run("reads n bytes", func(t *testing.T) {
		src := bytes.NewReader([]byte("0123456789abcdefghijklmnopqrstuvwxyz"))
		k, err := Random(src, 32)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.Bytes(), []byte("0123456789abcdefghijklmnopqrstuv")) {
			t.Fatal("Random did not return the reader's bytes")
		}
	})
	t.Run("fails on a short reader", func(t *testing.T) {
		if _, err := Random(bytes.NewReader(make([]byte, 31)), 32); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("fails on a non-positive length", func(t *testing.T) {
		if _, err := Random(bytes.NewReader(nil), 0); !errors.Is(err, ErrKeySize) {
			t.Fatalf("err = %v, want ErrKeySize", err)
		}
	})
	t.Run("fails on a nil reader", func(t *testing.T) {
		if _, err := Random(nil, 32); err == nil {
			t.Fatal("Random(nil) succeeded")
		}
	})
}
