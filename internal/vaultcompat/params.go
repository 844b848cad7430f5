package vaultcompat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
)

// params is a request's body as Vault's framework reads it: a JSON
// object whose numbers and booleans may also come as strings (the vault
// CLI sends key=value pairs as strings). Fields a handler does not read
// are ignored with a warning, as Vault does.
type params struct {
	m    map[string]any
	read map[string]bool
}

// readParams reads the body of c's request: empty is {} (vault write -f).
func readParams(r *http.Request) (*params, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") &&
		!strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return nil, invalid("Content-Type must be application/json")
	}
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, coffer.Errorf(coffer.ETOOLARGE, "request body is larger than %d bytes", mbe.Limit)
	}
	if err != nil {
		return nil, coffer.Errorf(coffer.EMALFORMED, "request body could not be read")
	}
	p := &params{m: map[string]any{}, read: map[string]bool{}}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" { // vault write -f; the Go client's Write(path, nil)
		return p, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&p.m); err != nil || p.m == nil || b[0] != '{' {
		return nil, invalid("failed to parse JSON input: the body must be a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("failed to parse JSON input: trailing data after the JSON object")
	}
	return p, nil
}

// has reports whether the body names key.
func (p *params) has(key string) bool {
	_, ok := p.m[key]
	p.read[key] = true
	return ok
}

// str returns a string field ("" when absent).
func (p *params) str(key string) (string, error) {
	p.read[key] = true
	return asString(p.m[key], key)
}

func asString(v any, key string) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", invalid(fmt.Sprintf("field %q must be a string", truncate(key)))
}

// integer returns a non-negative integer field (0 when absent).
func (p *params) integer(key string) (int64, error) {
	p.read[key] = true
	return asInt(p.m[key], key)
}

func asInt(v any, key string) (int64, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		s = x.String()
	case string:
		if x == "" {
			return 0, nil
		}
		s = x
	default:
		return 0, invalid(fmt.Sprintf("field %q must be an integer", truncate(key)))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<32-1 {
		return 0, invalid(fmt.Sprintf("field %q must be an integer from 0 to 4294967295", truncate(key)))
	}
	return n, nil
}

// boolean returns a boolean field and whether it was given.
func (p *params) boolean(key string) (bool, bool, error) {
	p.read[key] = true
	switch x := p.m[key].(type) {
	case nil:
		return false, false, nil
	case bool:
		return x, true, nil
	case string:
		if b, err := strconv.ParseBool(x); err == nil {
			return b, true, nil
		}
	case json.Number:
		if n, err := x.Int64(); err == nil && (n == 0 || n == 1) {
			return n == 1, true, nil
		}
	}
	return false, false, invalid(fmt.Sprintf("field %q must be a boolean", truncate(key)))
}

// batch returns batch_input's items as objects, and whether it was given
// (Vault also takes it as a JSON string holding the array).
func (p *params) batch() ([]map[string]any, bool, error) {
	p.read["batch_input"] = true
	raw, ok := p.m["batch_input"]
	if !ok || raw == nil {
		return nil, false, nil
	}
	if s, isStr := raw.(string); isStr {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return nil, true, invalid("batch_input must be an array of objects")
		}
	}
	list, isList := raw.([]any)
	if !isList {
		return nil, true, invalid("batch_input must be an array of objects")
	}
	if len(list) == 0 {
		return nil, true, invalid("missing batch input to process")
	}
	out := make([]map[string]any, len(list))
	for i, it := range list {
		m, isObj := it.(map[string]any)
		if !isObj {
			return nil, true, invalid(fmt.Sprintf("batch_input[%d] must be an object", i))
		}
		out[i] = m
	}
	return out, true, nil
}

// warnings are Vault's warnings for the fields no handler read; nil when
// there are none.
func (p *params) warnings() []string {
	var unread []string
	for k := range p.m {
		if !p.read[k] {
			unread = append(unread, truncate(k))
		}
	}
	if len(unread) == 0 {
		return nil
	}
	slices.Sort(unread)
	if len(unread) > 10 {
		unread = append(unread[:10], "…")
	}
	return []string{fmt.Sprintf("Endpoint ignored these unrecognized parameters: [%s]", strings.Join(unread, " "))}
}

// truncate keeps an attacker-chosen name short in a message.
func truncate(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
