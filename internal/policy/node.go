package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits on a document, so that no input can make Load slow or large.
const (
	// MaxDocumentBytes is the largest policy document Load accepts.
	MaxDocumentBytes = 1 << 20
	maxNodes         = 200_000
	maxDepth         = 32
)

// node is a format-neutral tree of a YAML or JSON document, so one
// validator serves both and reports the same paths.
type node struct {
	kind  nodeKind
	tag   string // for scalars: "str", "bool", "int", "float", "null"
	value string // for scalars
	keys  []string
	vals  []*node // mapping values, parallel to keys
	items []*node // sequence items
	line  int     // 1-based; 0 when unknown
}

type nodeKind uint8

const (
	kindScalar nodeKind = iota
	kindMap
	kindSeq
)

func (n *node) describe() string {
	switch n.kind {
	case kindMap:
		return "a mapping"
	case kindSeq:
		return "a list"
	}
	switch n.tag {
	case "str":
		return "a string"
	case "null":
		return "null"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

var errTooBig = errors.New("document too large or too deeply nested")

// parseYAML reads one YAML document into a node tree.
func parseYAML(data []byte) (*node, []Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []Problem{{Message: "document is empty"}}
		}
		return nil, []Problem{{Message: "not valid YAML: " + trimYAMLError(err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, []Problem{{Message: "more than one YAML document"}}
	}
	c := yamlConv{}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, []Problem{{Message: "document is empty"}}
		}
		root = root.Content[0]
	}
	n, err := c.conv(root, 0)
	if err != nil {
		return nil, []Problem{{Message: err.Error()}}
	}
	return n, c.problems
}

func trimYAMLError(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

type yamlConv struct {
	nodes    int
	problems []Problem
}

func (c *yamlConv) conv(y *yaml.Node, depth int) (*node, error) {
	c.nodes++
	if c.nodes > maxNodes || depth > maxDepth {
		return nil, errTooBig
	}
	switch y.Kind {
	case yaml.AliasNode:
		if y.Alias == nil {
			return nil, errors.New("YAML alias without anchor")
		}
		return c.conv(y.Alias, depth+1)
	case yaml.ScalarNode:
		n := &node{kind: kindScalar, value: y.Value, line: y.Line}
		switch y.ShortTag() {
		case "!!str", "!!binary":
			n.tag = "str"
		case "!!bool":
			n.tag = "bool"
		case "!!int":
			n.tag = "int"
		case "!!float":
			n.tag = "float"
		case "!!null":
			n.tag = "null"
		default:
			n.tag = "other"
		}
		return n, nil
	case yaml.SequenceNode:
		n := &node{kind: kindSeq, line: y.Line}
		for _, it := range y.Content {
			cn, err := c.conv(it, depth+1)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, cn)
		}
		return n, nil
	case yaml.MappingNode:
		n := &node{kind: kindMap, line: y.Line}
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			for k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				return nil, fmt.Errorf("line %d: mapping keys must be plain strings (no merge keys)", k.Line)
			}
			cv, err := c.conv(v, depth+1)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k.Value)
			n.vals = append(n.vals, cv)
		}
		return n, nil
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", y.Line)
}

// parseJSON reads one JSON value into a node tree, rejecting trailing data.
// Duplicate keys are left for the validator, as in YAML.
func parseJSON(data []byte) (*node, []Problem) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	c := jsonConv{dec: dec}
	n, err := c.value(0)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("data after the JSON value")
		}
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []Problem{{Message: "document is empty or cut short"}}
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, []Problem{{Message: fmt.Sprintf("not valid JSON at byte %d: %s", se.Offset, se.Error())}}
		}
		return nil, []Problem{{Message: "not valid JSON: " + err.Error()}}
	}
	return n, nil
}

type jsonConv struct {
	dec   *json.Decoder
	nodes int
}

func (c *jsonConv) value(depth int) (*node, error) {
	c.nodes++
	if c.nodes > maxNodes || depth > maxDepth {
		return nil, errTooBig
	}
	tok, err := c.dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: kindMap}
			for c.dec.More() {
				kt, err := c.dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("object key is not a string")
				}
				v, err := c.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.vals = append(n.vals, v)
			}
			if _, err := c.dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &node{kind: kindSeq}
			for c.dec.More() {
				v, err := c.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, err := c.dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
		return nil, errors.New("unexpected delimiter")
	case string:
		return &node{kind: kindScalar, tag: "str", value: t}, nil
	case bool:
		return &node{kind: kindScalar, tag: "bool", value: strconv.FormatBool(t)}, nil
	case json.Number:
		return &node{kind: kindScalar, tag: "float", value: t.String()}, nil
	case nil:
		return &node{kind: kindScalar, tag: "null"}, nil
	}
	return nil, errors.New("unexpected JSON token")
}

// quote quotes s for a problem message, cut to a readable length.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		return strconv.Quote(s[:n]) + "…"
	}
	return strconv.Quote(s)
}
