package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/coffer"
)

func asErr[T error](err error, target *T) bool { return errors.As(err, target) }

// readBody reads the whole (size-limited) body: 413 over the limit, 400 if
// it is not valid UTF-8.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, coffer.Errorf(coffer.ETOOLARGE, "request body is larger than %d bytes", mbe.Limit)
	}
	if err != nil {
		return nil, coffer.Errorf(coffer.EMALFORMED, "request body could not be read")
	}
	if !utf8.Valid(b) {
		return nil, coffer.Errorf(coffer.EMALFORMED, "request body is not valid UTF-8")
	}
	return b, nil
}

// decodeJSON strictly decodes one JSON object into v: 400 when it is not
// JSON, 422 when it is JSON of the wrong shape (unknown fields, wrong types).
// Messages name fields and types, never values.
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") &&
		!strings.HasPrefix(ct, "application/x-www-form-urlencoded") /* curl -d default */ {
		return &coffer.Error{Code: "unsupported_media", Message: "Content-Type must be application/json"}
	}
	b, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeBytes(b, v)
}

func decodeBytes(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return coffer.Errorf(coffer.EMALFORMED, "request body is empty; a JSON object is required")
	}
	if b[0] != '{' {
		if json.Valid(b) {
			return coffer.Errorf(coffer.EINVALID, "request body must be a JSON object")
		}
		return coffer.Errorf(coffer.EMALFORMED, "request body is not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return coffer.Errorf(coffer.EMALFORMED, "request body holds more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return coffer.Errorf(coffer.EMALFORMED, "request body holds trailing data")
	}
	return nil
}

func jsonError(err error) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return coffer.Errorf(coffer.EINVALID, "field %q must be of JSON type %s", truncate(field), jsonType(te.Type))
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return coffer.Errorf(coffer.EMALFORMED, "request body is not valid JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return coffer.Errorf(coffer.EINVALID, "unknown field %q", truncate(name))
	}
	return coffer.Errorf(coffer.EMALFORMED, "request body is not valid JSON")
}

// jsonType names the JSON type that decodes into t.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonType(t.Elem())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string" // base64
		}
		return "array"
	case reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	}
	return fmt.Sprintf("%q", t.String())
}

// truncate keeps an attacker-chosen name short in a message.
func truncate(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
