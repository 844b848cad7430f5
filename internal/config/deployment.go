package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrInitialised is the error of init or restore given a directory that
// already holds a Coffer deployment.
var ErrInitialised = errors.New("data directory is already initialised")

// Initialised reports whether dir holds a Coffer config.
func Initialised(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, FileName))
	return err == nil
}

// StoreDSN is where the deployment's store is: the database URL, or the
// SQLite file in the data directory.
func (c *Config) StoreDSN() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return filepath.Join(c.DataDir, "coffer.db")
}

// CreateDataDir makes dir (0700) for a new deployment and returns its
// absolute path. It refuses (ErrInitialised) a directory that already
// holds a deployment, or anything but a SQLite file and dev credentials
// left by an earlier attempt: init never overwrites.
func CreateDataDir(dataDir string) (string, error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	if Initialised(dir) {
		return "", fmt.Errorf("%s: %w (refusing to overwrite it)", dir, ErrInitialised)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { // #nosec G302 -- a directory needs its x bit; 0700 is owner-only
		return "", fmt.Errorf("data directory mode: %w", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		for _, e := range entries {
			if e.Name() != "coffer.db" && e.Name() != "dev-credentials.json" {
				return "", fmt.Errorf("%s is not empty (found %s): %w", dir, e.Name(), ErrInitialised)
			}
		}
	}
	return dir, nil
}
