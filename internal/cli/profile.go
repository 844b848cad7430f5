package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Profile is where and as whom the CLI calls a server.
type Profile struct {
	Name string `json:"-"`
	URL  string `json:"url"`
	// Endpoints are the deployment's further nodes: calls are spread
	// over URL and these, and fail over between them.
	Endpoints []string `json:"endpoints,omitempty"`
	ClientID  string   `json:"client_id"`
	// CAFile is the CA certificate the server's is checked against: a copy
	// kept in the profile's directory.
	CAFile string `json:"ca_file"`
}

var profileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// store is the profiles directory: DIR/profiles/NAME/{profile.json,
// secret, ca.pem} and DIR/current naming the profile in use.
type store struct{ dir string }

// configDir returns the CLI's config directory: $COFFER_CONFIG_DIR, or
// coffer in the user's config directory.
func configDir(getenv func(string) string) (string, error) {
	if d := getenv("COFFER_CONFIG_DIR"); d != "" {
		return d, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory: %w (set COFFER_CONFIG_DIR)", err)
	}
	return filepath.Join(base, "coffer"), nil
}

func (s store) profileDir(name string) (string, error) {
	if !profileName.MatchString(name) {
		return "", fmt.Errorf("profile name %q: letters, digits, '.', '_' and '-' only", name)
	}
	return filepath.Join(s.dir, "profiles", name), nil
}

// save writes the profile, the CA certificate and the secret (0600, in a
// 0700 directory), and makes the profile the current one.
func (s store) save(p Profile, caPEM []byte, secret string) error {
	dir, err := s.profileDir(p.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone: tighten it.
	for _, d := range []string{s.dir, filepath.Join(s.dir, "profiles"), dir} {
		if err := os.Chmod(d, 0o700); err != nil { // #nosec G302 -- a directory needs its x bit; 0700 is owner-only
			return fmt.Errorf("profile: %w", err)
		}
	}
	p.CAFile = filepath.Join(dir, "ca.pem")
	if err := writeFile(p.CAFile, caPEM, 0o600); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "secret"), []byte(secret), 0o600); err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if err := writeFile(filepath.Join(dir, "profile.json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(s.dir, "current"), []byte(p.Name+"\n"), 0o600)
}

// writeFile replaces path with data through a temporary file in the same
// directory, created with mode (so the secret is never readable by others,
// not even for a moment).
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// current names the profile in use: name if given, else the current one,
// else "default".
func (s store) current(name string) string {
	if name != "" {
		return name
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "current")) // #nosec G304 -- the user's own config directory
	if err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

// errNoProfile says to log in first.
var errNoProfile = errors.New("not logged in: run coffer login --url URL --ca-file FILE --client-id ID first")

// load reads a profile and its secret. It refuses a secret file others may
// read.
func (s store) load(name string) (Profile, string, error) {
	name = s.current(name)
	dir, err := s.profileDir(name)
	if err != nil {
		return Profile{}, "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, "profile.json")) // #nosec G304 -- the user's own config directory
	if errors.Is(err, fs.ErrNotExist) {
		return Profile{}, "", fmt.Errorf("profile %q: %w", name, errNoProfile)
	}
	if err != nil {
		return Profile{}, "", fmt.Errorf("profile %q: %w", name, err)
	}
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return Profile{}, "", fmt.Errorf("profile %q: %w", name, err)
	}
	p.Name = name
	secretFile := filepath.Join(dir, "secret")
	fi, err := os.Stat(secretFile)
	if err != nil {
		return Profile{}, "", fmt.Errorf("profile %q: secret: %w", name, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Profile{}, "", fmt.Errorf("profile %q: %s is readable by others (mode %o): chmod 600 it, or log in again", name, secretFile, fi.Mode().Perm())
	}
	sec, err := os.ReadFile(secretFile) // #nosec G304 -- the user's own config directory
	if err != nil {
		return Profile{}, "", fmt.Errorf("profile %q: secret: %w", name, err)
	}
	return p, strings.TrimSpace(string(sec)), nil
}

// remove deletes a profile.
func (s store) remove(name string) error {
	dir, err := s.profileDir(s.current(name))
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}
