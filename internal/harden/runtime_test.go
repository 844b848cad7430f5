package harden

import (
	"log/slog"
	"runtime/debug"
	"testing"
)

// TuneRuntime sets DefaultGCPercent, unless the operator set GOGC.
func TestTuneRuntime(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOGC", "")
	TuneRuntime(log)
	if got := debug.SetGCPercent(100); got != DefaultGCPercent {
		t.Fatalf("GC percent = %d without GOGC, want %d", got, DefaultGCPercent)
	}
	t.Setenv("GOGC", "100")
	TuneRuntime(log)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent = %d with GOGC=100 set, want it left at 100", got)
	}
}
