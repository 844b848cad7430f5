package config

import (
	"errors"
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
