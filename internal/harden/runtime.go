package harden

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target for a serving process
// when the operator has not set GOGC. A server's live heap is small (keys,
// caches, in-flight requests), so letting it grow to five times that
// between collections costs little memory and saved about a tenth of the
// CPU of a record read under load (BENCHMARKS.md). GOMEMLIMIT, when set,
// still bounds it.
const DefaultGCPercent = 400

// TuneRuntime applies DefaultGCPercent unless GOGC is set.
func TuneRuntime(log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(DefaultGCPercent)
	log.Debug("garbage collector target set", "gogc", DefaultGCPercent)
}
