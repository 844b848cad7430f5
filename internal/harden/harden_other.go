//go:build !linux

package harden

import "log/slog"

// Harden is a no-op outside Linux; see harden_linux.go.
func Harden(log *slog.Logger) {
	log.Warn("process hardening (no core dumps, locked memory) is implemented for Linux only")
}
