//go:build linux

package app

import (
	"log/slog"

	"golang.org/x/sys/unix"
)

// Harden makes the serving process keep its secrets to itself: no core
// dumps (a dump would hold unwrapped keys and plaintext), not ptrace-able or
// dumpable by other processes of the same user, and — where the limits
// allow — memory locked so keys never reach swap. Each step is best effort
// and logged; none is fatal.
func Harden(log *slog.Logger) {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		log.Warn("could not disable core dumps", "error", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		log.Warn("could not mark the process non-dumpable", "error", err)
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE); err != nil {
		log.Warn("could not lock memory (keys may reach swap); raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK", "error", err)
	}
}
