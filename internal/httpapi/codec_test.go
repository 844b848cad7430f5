package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/vault"
)

func TestDecodeBytes(t *testing.T) {
	cases := []struct {
		name, body string
		code       string
	}{
		{"ok/record", `{"owner":"o","data":{"email":"a@b.io"}}`, ""},
		{"fail/empty", ``, coffer.EMALFORMED},
		{"fail/not json", `{"owner":`, coffer.EMALFORMED},
		{"fail/array", `["x"]`, coffer.EINVALID},
		{"fail/string", `"x"`, coffer.EINVALID},
		{"fail/unknown field", `{"id":"x","data":{}}`, coffer.EINVALID},
		{"fail/wrong type", `{"owner":5,"data":{}}`, coffer.EINVALID},
		{"fail/two values", `{"data":{}} {"data":{}}`, coffer.EMALFORMED},
		{"fail/trailing garbage", `{"data":{}} x`, coffer.EMALFORMED},
		{"fail/deep nesting", `{"data":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`, coffer.EMALFORMED},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var nr vault.NewRecord
			err := decodeBytes([]byte(c.body), &nr)
			if got := coffer.ErrorCode(err); got != c.code {
				t.Fatalf("code %q, want %q (%v)", got, c.code, err)
			}
		})
	}
}

// FuzzDecodeRecord feeds arbitrary bodies to the record decoder: it never
// panics, every failure is a client error (400 or 422, never internal), and
// its message never contains the body's string values.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range []string{
		`{"owner":"o","subject":"s","data":{"email":"a@b.io","age":3}}`,
		`{"data":{"x":"` + "\xff" + `"}}`, `{"data":null}`, `{}`, `[]`, `{"owner":1e400}`,
		`{"data":{"a":{"b":{"c":[1,2,{"d":"e"}]}}}}`, `{"owner":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var nr vault.NewRecord
		err := decodeBytes(body, &nr)
		if err == nil {
			return
		}
		code := coffer.ErrorCode(err)
		if code != coffer.EMALFORMED && code != coffer.EINVALID {
			t.Fatalf("decode error code %q for %q", code, body)
		}
		var v any
		if json.Unmarshal(body, &v) == nil {
			for _, s := range stringsIn(v) {
				if len(s) >= 8 && strings.Contains(coffer.ErrorMessage(err), s) {
					t.Fatalf("error message echoes a submitted value: %q", coffer.ErrorMessage(err))
				}
			}
		}
	})
}

// stringsIn lists the string values (not keys) in a decoded JSON value.
func stringsIn(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, stringsIn(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range x {
			out = append(out, stringsIn(e)...)
		}
		return out
	}
	return nil
}
