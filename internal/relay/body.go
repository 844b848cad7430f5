package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/relay/fieldpath"
)

// maxDepth bounds the nesting of a JSON body the relay parses.
const maxDepth = 256

// errDuplicate: a JSON object names a member twice (or twice but for
// case). Decoders disagree on which one wins, so a relay that changed one
// could forward the other in clear: such a body is refused.
var errDuplicate = errors.New("a JSON object names a member twice")

// node is a JSON value kept in document order: an object's members as
// written, strings decoded, numbers and literals as their text.
type node struct {
	kind  byte // 'o' object, 'a' array, 's' string, 'l' literal (number, true, false, null)
	keys  []string
	vals  []*node
	str   string // 's': the decoded string; 'l': the literal's text
	dirty bool
}

// parseJSON parses one JSON value, refusing trailing data, duplicate
// members (exact or but for case) and nesting deeper than maxDepth.
func parseJSON(b []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	n, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON value")
	}
	return n, nil
}

func parseValue(dec *json.Decoder, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("JSON nested deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: 'o'}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("malformed JSON: %w", err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("malformed JSON: object key")
				}
				fk := strings.ToLower(k)
				if seen[fk] || seen[k] {
					return nil, errDuplicate
				}
				seen[fk], seen[k] = true, true
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.keys, n.vals = append(n.keys, k), append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("malformed JSON: %w", err)
			}
			return n, nil
		case '[':
			n := &node{kind: 'a'}
			for dec.More() {
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.vals = append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("malformed JSON: %w", err)
			}
			return n, nil
		}
		return nil, errors.New("malformed JSON")
	case string:
		return &node{kind: 's', str: t}, nil
	case json.Number:
		return &node{kind: 'l', str: t.String()}, nil
	case bool:
		return &node{kind: 'l', str: fmt.Sprint(t)}, nil
	case nil:
		return &node{kind: 'l', str: "null"}, nil
	}
	return nil, errors.New("malformed JSON")
}

// encode writes n as compact JSON.
func (n *node) encode(b *bytes.Buffer) {
	switch n.kind {
	case 'o':
		b.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			n.vals[i].encode(b)
		}
		b.WriteByte('}')
	case 'a':
		b.WriteByte('[')
		for i, v := range n.vals {
			if i > 0 {
				b.WriteByte(',')
			}
			v.encode(b)
		}
		b.WriteByte(']')
	case 's':
		writeString(b, n.str)
	default:
		b.WriteString(n.str)
	}
}

func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // the encoder's newline
}

// site is one value on a listed field: where it is and what it holds.
type site struct {
	op    int // index into the section's ops
	value string
	set   func(string)
	// kind of what was found: 's' a string; anything else cannot be
	// (de)tokenized or masked (the request is refused).
	kind byte
}

// collect appends the sites of path p under n (objects matched by name as
// fieldpath.Segment.NameMatches says, arrays by [*]); nulls and missing
// members are skipped.
func collect(n *node, p fieldpath.Path, op int, out *[]site) {
	if len(p) == 0 {
		switch n.kind {
		case 's':
			nn := n
			*out = append(*out, site{op: op, value: n.str, kind: 's', set: func(v string) { nn.str, nn.dirty = v, true }})
		case 'l':
			if n.str != "null" {
				*out = append(*out, site{op: op, kind: 'l'})
			}
		default:
			*out = append(*out, site{op: op, kind: n.kind})
		}
		return
	}
	seg := p[0]
	switch {
	case seg.All && n.kind == 'a':
		for _, v := range n.vals {
			collect(v, p[1:], op, out)
		}
	case !seg.All && n.kind == 'o':
		for i, k := range n.keys {
			if seg.NameMatches(k) {
				collect(n.vals[i], p[1:], op, out)
			}
		}
	}
}

// form is an application/x-www-form-urlencoded body (or a query) kept in
// order.
type form struct {
	pairs []formPair
}

type formPair struct {
	key, value string
	path       fieldpath.Path
}

// errSemicolon: a raw ';' in a form. Some servers still split on it, so a
// value listed as "a=1;card=…" would reach them as a field the relay did
// not see: refused.
var errSemicolon = errors.New("a form may not hold a raw ';'")

func parseForm(s string) (*form, error) {
	f := &form{}
	if strings.Contains(s, ";") {
		return nil, errSemicolon
	}
	for s != "" {
		var kv string
		kv, s, _ = strings.Cut(s, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, errors.New("malformed form: bad escape in a key")
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, errors.New("malformed form: bad escape in a value")
		}
		if !utf8.ValidString(key) {
			return nil, errors.New("malformed form: key not UTF-8")
		}
		f.pairs = append(f.pairs, formPair{key: key, value: val, path: fieldpath.FormKey(key)})
	}
	return f, nil
}

func (f *form) encode() string {
	var b strings.Builder
	for i, p := range f.pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p.key))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.value))
	}
	return b.String()
}

// collectForm appends the sites of path p in f: every value of every key
// that stands for p (a repeated key gives several).
func collectForm(f *form, p fieldpath.Path, op int, out *[]site) {
	for i := range f.pairs {
		if p.Matches(f.pairs[i].path) {
			pp := &f.pairs[i]
			*out = append(*out, site{op: op, value: pp.value, kind: 's', set: func(v string) { pp.value = v }})
		}
	}
}
