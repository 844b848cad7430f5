package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cofferhq/coffer/internal/cluster"
)

// ErrUnknownKey is wrapped by errors for a key that Config does not have,
// in the file or in Set.
var ErrUnknownKey = errors.New("unknown key")

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "COFFER_"

// maxFileSize bounds coffer.yaml.
const maxFileSize = 1 << 20

// key describes one scalar setting.
type key struct {
	name  string // dotted YAML path
	index []int  // field index path from Config
	path  bool   // resolved against the configuration directory
}

var durationType = reflect.TypeFor[Duration]()

// keyTable lists every scalar setting of Config in declaration order.
func keyTable() []key {
	var out []key
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			switch {
			case f.Type == durationType:
				out = append(out, key{name: prefix + name, index: idx})
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, prefix+name+".", idx)
			case f.Type.Kind() == reflect.Slice, f.Type.Kind() == reflect.Map:
				// Lists and maps come only from the file.
			default:
				out = append(out, key{name: prefix + name, index: idx, path: f.Tag.Get("path") == "true"})
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// yamlName is a field's YAML key, or "" for an unexported or skipped field.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func lookupKey(name string) (key, bool) {
	for _, k := range keyTable() {
		if k.name == name {
			return k, true
		}
	}
	return key{}, false
}

// Keys returns every key Set and the environment accept, sorted.
func Keys() []string {
	var out []string
	for _, k := range keyTable() {
		out = append(out, k.name)
	}
	sort.Strings(out)
	return out
}

// EnvName returns the environment variable of a key:
// "auth.token_ttl" → "COFFER_AUTH_TOKEN_TTL".
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Load reads dir/coffer.yaml (strictly: an unknown key is an error naming
// it), applies defaults, then the COFFER_* variables found in env (pass
// os.Environ()), resolves relative paths against dir and validates the
// result. A missing file is not an error: the defaults and env apply
// alone (as for `coffer init`). Errors never contain a secret.
func Load(dir string, env []string) (*Config, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("config directory: %w", err)
	}
	c := defaults(abs)
	path := filepath.Join(abs, FileName)
	b, err := readFile(path)
	switch {
	case err == nil:
		if err := c.parse(b); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, err
	}
	if err := c.applyEnv(env); err != nil {
		return nil, err
	}
	c.finish()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator's own config file in the data directory
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}

// parse decodes YAML over c's current values; keys absent from b keep them.
func (c *Config) parse(b []byte) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping of settings", root.Line)
	}
	if err := checkKeys(root, reflect.TypeFor[Config](), ""); err != nil {
		return err
	}
	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return err
	}
	return nil
}

// checkKeys walks n against t and reports, by full dotted key and line,
// the first key t does not have or the first value of the wrong type.
// Messages never repeat a value.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	key := strings.TrimSuffix(prefix, ".")
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // null resets to the zero value; Validate judges it
	}
	switch {
	case t == durationType:
		var d Duration
		if err := n.Decode(&d); err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, key, errDuration)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s: want a mapping", n.Line, key)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByYAML(t, k.Value)
			if !ok {
				return fmt.Errorf("line %d: %w %q", k.Line, ErrUnknownKey, prefix+k.Value)
			}
			if err := checkKeys(v, f.Type, prefix+k.Value+"."); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s: want a list", n.Line, key)
		}
		for i, item := range n.Content {
			if err := checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d].", key, i)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s: want a mapping", n.Line, key)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(n.Content[i+1], t.Elem(), prefix+n.Content[i].Value+"."); err != nil {
				return err
			}
		}
	default:
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			return fmt.Errorf("line %d: %s: %s", n.Line, key, want(t))
		}
	}
	return nil
}

// want describes the values a scalar type takes.
func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "want true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "want a whole number"
	case reflect.Float32, reflect.Float64:
		return "want a number"
	default:
		return "want a string"
	}
}

func fieldByYAML(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if n := yamlName(f); n != "" && n == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// applyEnv applies every non-empty COFFER_* variable that names a key.
func (c *Config) applyEnv(env []string) error {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			vars[k] = v // later entries win, as in os/exec
		}
	}
	var errs []error
	for _, k := range keyTable() {
		name := EnvName(k.name)
		v, ok := vars[name]
		if !ok || v == "" {
			continue
		}
		if err := c.setField(k, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Set sets the setting key (a name from Keys) from its string form, as a
// flag would; relative paths are resolved against the configuration
// directory, and settings derived from key follow it. Call Validate after
// the last Set. The error names the key, never the value.
func (c *Config) Set(key, value string) error {
	k, ok := lookupKey(key)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, key)
	}
	if err := c.setField(k, value); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	c.finish()
	return nil
}

// setField parses value into k's field and marks it given, not derived.
func (c *Config) setField(k key, value string) error {
	f := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	switch {
	case f.Type() == durationType:
		d, err := ParseDuration(value)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(d))
	case f.Kind() == reflect.String:
		f.SetString(value)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return errors.New(want(f.Type()))
		}
		f.SetBool(b)
	case f.CanInt():
		n, err := strconv.ParseInt(value, 10, f.Type().Bits())
		if err != nil {
			return errors.New(want(f.Type()))
		}
		f.SetInt(n)
	case f.CanFloat():
		x, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return errors.New(want(f.Type()))
		}
		f.SetFloat(x)
	default:
		return fmt.Errorf("cannot set a %s", f.Type())
	}
	if c.derived != nil {
		delete(c.derived, k.name)
	}
	return nil
}

// derivation fills a setting left empty from other settings.
type derivation struct {
	key   string
	field *string
	value func() string
}

// derivations lists derived settings in dependency order.
func (c *Config) derivations() []derivation {
	tlsFile := func(name string) func() string {
		return func() string { return joinPath(c.DataDir, "tls", name) }
	}
	return []derivation{
		{"public_url", &c.PublicURL, func() string { return publicURLFor(c.Listen) }},
		{"auth.issuer", &c.Auth.Issuer, func() string { return c.PublicURL }},
		{"root_key.file", &c.RootKey.File, func() string { return joinPath(c.DataDir, "root.key") }},
		{"root_key.check_file", &c.RootKey.CheckFile, func() string { return joinPath(c.DataDir, "root-key.check") }},
		{"tls.cert_file", &c.TLS.CertFile, tlsFile("server.pem")},
		{"tls.key_file", &c.TLS.KeyFile, tlsFile("server-key.pem")},
		{"tls.ca_file", &c.TLS.CAFile, tlsFile("ca.pem")},
		{"tls.ca_key_file", &c.TLS.CAKeyFile, tlsFile("ca-key.pem")},
		{"node", &c.Node, func() string {
			// The id serve made and kept in the data directory, when it
			// was made here (internal/cluster); the host name before that.
			h := hostname()
			if id, ok := cluster.KeptID(c.DataDir, h); ok {
				return id
			}
			return h
		}},
	}
}

// finish resolves relative paths and fills derived settings.
func (c *Config) finish() {
	if c.derived == nil {
		c.derived = map[string]bool{}
	}
	emptyToNil(reflect.ValueOf(c).Elem())
	if c.DataDir == "" {
		c.DataDir = c.dir
	}
	root := reflect.ValueOf(c).Elem()
	for _, k := range keyTable() {
		if !k.path {
			continue
		}
		f := root.FieldByIndex(k.index)
		if p := f.String(); p != "" && !filepath.IsAbs(p) {
			f.SetString(joinPath(c.dir, p))
		}
	}
	for _, d := range c.derivations() {
		if *d.field == "" || c.derived[d.key] {
			*d.field = d.value()
			c.derived[d.key] = true
		}
	}
}

// publicURLFor turns a listen address into a URL clients can use: an
// unspecified host (":8443", "0.0.0.0:8443", "[::]:8443") becomes localhost.
func publicURLFor(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "https://" + listen // Validate reports the address
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "https://" + net.JoinHostPort(host, port)
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "coffer"
}

func joinPath(elem ...string) string { return filepath.Join(elem...) }

// emptyToNil makes every empty list and map in v nil, so that a file that
// says "webhooks: [ ]" (or a list of nothing) means what one without the key
// means, and a configuration reads back as it was written (empty lists are
// not written).
func emptyToNil(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				emptyToNil(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 && !v.IsNil() && v.CanSet() {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if v.Kind() == reflect.Slice {
			for i := 0; i < v.Len(); i++ {
				emptyToNil(v.Index(i))
			}
		}
	}
}
