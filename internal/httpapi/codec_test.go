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

// TestWrongTypeNamesTheJSONType: a value of the wrong JSON type is a 422
// naming the JSON type the field takes, for named types, slices of named
// types and pointers too.
func TestWrongTypeNamesTheJSONType(t *testing.T) {
	type named string
	type item struct {
		V named `json:"v"`
	}
	var v struct {
		S     named          `json:"s"`
		Items []item         `json:"items"`
		Bytes []byte         `json:"bytes"`
		M     map[string]int `json:"m"`
		P     *int           `json:"p"`
		B     bool           `json:"b"`
		One   item           `json:"one"`
	}
	for body, want := range map[string]string{
		`{"s":1}`:             `field "s" must be of JSON type string`,
		`{"items":{}}`:        `field "items" must be of JSON type array`,
		`{"items":[1]}`:       `field "items.0" must be of JSON type object`,
		`{"items":[{"v":1}]}`: `field "items.0.v" must be of JSON type string`,
		`{"bytes":1}`:         `field "bytes" must be of JSON type string`,
		`{"m":[]}`:            `field "m" must be of JSON type object`,
		`{"m":{"a":"x"}}`:     `field "m.a" must be of JSON type number`,
		`{"p":"x"}`:           `field "p" must be of JSON type number`,
		`{"b":"x"}`:           `field "b" must be of JSON type boolean`,
		`{"one":"x"}`:         `field "one" must be of JSON type object`,
	} {
		err := decodeBytes([]byte(body), &v)
		if coffer.ErrorCode(err) != coffer.EINVALID || coffer.ErrorMessage(err) != want {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}
