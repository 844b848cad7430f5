package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fileHeader opens every file Write produces.
const fileHeader = `# Coffer server configuration, written by coffer init.
# COFFER_* environment variables override it (auth.token_ttl → COFFER_AUTH_TOKEN_TTL),
# and flags override both. Relative paths are relative to this directory.
`

// encode validates c and returns the absolute dir, the config file's path
// in it and the file's contents (with the header).
func (c *Config) encode(dir string) (abs, path string, b []byte, err error) {
	if abs, err = filepath.Abs(dir); err != nil {
		return "", "", nil, fmt.Errorf("config directory: %w", err)
	}
	if err := c.Validate(); err != nil {
		return "", "", nil, err
	}
	body, err := c.forFile(abs).marshal()
	if err != nil {
		return "", "", nil, err
	}
	return abs, filepath.Join(abs, FileName), append([]byte(fileHeader), body...), nil
}

// Write validates c and writes it to dir/coffer.yaml with mode 0600. It
// never overwrites: an existing file is an error wrapping fs.ErrExist.
// Settings still derived from others are left out, and paths inside dir
// are written relative to it, so the directory can move.
func Write(dir string, c *Config) error {
	_, path, b, err := c.encode(dir)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- DIR/coffer.yaml, DIR is the operator's data directory
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	fail := func(err error) error {
		// Best effort: the write already failed; leave no partial file.
		_ = f.Close()
		if rerr := os.Remove(path); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		if rerr := os.Remove(path); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// forFile returns the copy of c that Write stores for directory dir.
func (c *Config) forFile(dir string) *Config {
	out := c.clone()
	for _, d := range out.derivations() {
		if c.derived[d.key] {
			*d.field = ""
		}
	}
	root := reflect.ValueOf(out).Elem()
	for _, k := range keyTable() {
		if !k.path {
			continue
		}
		f := root.FieldByIndex(k.index)
		p := f.String()
		if p == "" || !filepath.IsAbs(p) {
			continue
		}
		if rel, err := filepath.Rel(dir, p); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			f.SetString(rel)
		}
	}
	if out.DataDir == "." {
		out.DataDir = ""
	}
	return out
}

func (c *Config) marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// clone deep-copies c.
func (c *Config) clone() *Config {
	out := *c
	out.derived = maps.Clone(c.derived)
	out.Auth.External = slices.Clone(c.Auth.External)
	out.Detect.Webhooks = slices.Clone(c.Detect.Webhooks)
	out.Limits.Roles = maps.Clone(c.Limits.Roles)
	out.Relay.Routes = cloneRoutes(c.Relay.Routes)
	return &out
}

// redactedMark replaces a secret in Redacted output.
const redactedMark = "REDACTED"

// Redacted returns a copy of c that is safe to print or log: the DSN
// password and any password query parameter, webhook and witness secrets
// and webhook URL credentials and query values are replaced by REDACTED.
func (c Config) Redacted() *Config {
	out := c.clone()
	out.DatabaseURL = redactDSN(out.DatabaseURL)
	if out.Audit.WitnessSecret != "" {
		out.Audit.WitnessSecret = redactedMark
	}
	if strings.Contains(out.Audit.Witness, "://") {
		out.Audit.Witness = redactURL(out.Audit.Witness, true)
	}
	for i := range out.Detect.Webhooks {
		w := &out.Detect.Webhooks[i]
		w.URL = redactURL(w.URL, true)
		if w.Secret != "" {
			w.Secret = redactedMark
		}
	}
	return out
}

// String renders the redacted configuration as YAML.
func (c Config) String() string {
	b, err := c.Redacted().marshal()
	if err != nil {
		return "config: " + err.Error()
	}
	return string(b)
}

// GoString is String, so %#v cannot print a secret either.
func (c Config) GoString() string { return c.String() }

var kvPassword = regexp.MustCompile(`(?i)\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// redactDSN masks the password of a database URL, in its user info and in
// query parameters. Anything it cannot parse is masked whole.
func redactDSN(s string) string {
	if s == "" {
		return ""
	}
	if !strings.Contains(s, "://") {
		return kvPassword.ReplaceAllString(s, "${1}="+redactedMark)
	}
	return redactURL(s, false)
}

// redactURL masks the password in u's user info and, with allQuery, every
// query value (else only password-like ones).
func redactURL(s string, allQuery bool) string {
	u, err := url.Parse(s)
	if err != nil {
		return redactedMark
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redactedMark)
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = redactedMark
		} else {
			for k := range q {
				lk := strings.ToLower(k)
				if allQuery || strings.Contains(lk, "password") || strings.Contains(lk, "secret") || strings.Contains(lk, "token") {
					q[k] = []string{redactedMark}
				}
			}
			u.RawQuery = q.Encode()
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// Replace validates c and atomically replaces dir/coffer.yaml with it
// (mode 0600): it writes dir/coffer.yaml.tmp, syncs it and renames it over
// the old file, so a crash leaves either the old or the new configuration,
// never half of one. Use it for changes the operator asked for (a new root
// key file); Write is for a first configuration.
func Replace(dir string, c *Config) error {
	abs, path, b, err := c.encode(dir)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace config: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- DIR/coffer.yaml.tmp, DIR is the operator's data directory
	if err != nil {
		return fmt.Errorf("replace config: %w", err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			werr = errors.Join(werr, rerr)
		}
		return fmt.Errorf("replace %s: %w", path, werr)
	}
	if d, err := os.Open(abs); err == nil { // #nosec G304 -- the data directory itself, to sync the rename (best effort)
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
