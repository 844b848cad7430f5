package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

const plain = "correct-horse-battery-staple-9"

func TestPasswordAndValueAreNotComparable(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[Password](), reflect.TypeFor[Value]()} {
		if typ.Comparable() {
			t.Errorf("%v is comparable; == would compile", typ)
		}
	}
}

// TestPasswordAndValueNeverPrint: fmt verbs, slog (text and JSON) and
// encoding/json show the redaction, whether the secret stands alone or sits
// in a struct, a pointer, a slice or a map.
func TestPasswordAndValueNeverPrint(t *testing.T) {
	p, v := NewPassword(plain), NewValue([]byte(plain))
	type holder struct {
		P      Password
		V      Value
		hidden Password
		Ptr    *Value
	}
	h := holder{P: p, V: v, hidden: p, Ptr: &v}
	things := map[string]any{"password": p, "value": v, "*password": &p, "struct": h, "*struct": &h,
		"slice": []Password{p}, "map": map[string]Value{"k": v}}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%10v"} {
		for name, x := range things {
			if out := fmt.Sprintf(verb, x); strings.Contains(out, plain) || strings.Contains(out, fmt.Sprintf("%x", plain)) {
				t.Errorf("%s %s printed the secret: %s", verb, name, out)
			}
		}
	}
	var buf bytes.Buffer
	for _, hd := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		slog.New(hd).Info("login", "password", p, "value", v, "holder", h)
	}
	if strings.Contains(buf.String(), plain) || !strings.Contains(buf.String(), Redacted) {
		t.Errorf("slog: %s", buf.String())
	}
	b, err := json.Marshal(h)
	if err != nil || strings.Contains(string(b), plain) {
		t.Errorf("json: %s %v", b, err)
	}
}

func TestPasswordAndValueEqualAndReveal(t *testing.T) {
	p := NewPassword(plain)
	if p.Reveal() != plain || !p.Equal(NewPassword(plain)) || p.Equal(NewPassword(plain+"x")) || p.IsZero() {
		t.Fatal("password: Reveal or Equal is wrong")
	}
	v := NewValue([]byte(plain))
	if string(v.Reveal()) != plain || !v.Equal(NewValue([]byte(plain))) || v.Equal(Value{}) || v.Len() != len(plain) {
		t.Fatal("value: Reveal or Equal is wrong")
	}
	var in struct {
		Password Password `json:"password"`
	}
	if err := json.Unmarshal([]byte(`{"password":"`+plain+`"}`), &in); err != nil || in.Password.Reveal() != plain {
		t.Fatalf("a password decodes from JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"password":7}`), &in); err == nil || strings.Contains(err.Error(), "7") {
		t.Fatalf("a non-string password: %v", err)
	}
}
