//go:build linux

package harden

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
	// Locking future mappings under a bounded RLIMIT_MEMLOCK would make the
	// heap's growth past it fail (the runtime then dies out of memory), so
	// lock only when the limit is unlimited or does not apply (CAP_IPC_LOCK).
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); (err != nil || lim.Cur != unix.RLIM_INFINITY) && !hasCapIPCLock() {
		log.Warn("not locking memory (keys may reach swap): RLIMIT_MEMLOCK is bounded; set it to unlimited (e.g. LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK", "limit_bytes", lim.Cur)
		return
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE); err != nil {
		log.Warn("could not lock memory (keys may reach swap); grant CAP_IPC_LOCK", "error", err)
	}
}

// hasCapIPCLock reports whether CAP_IPC_LOCK is in the effective set, which
// exempts the process from RLIMIT_MEMLOCK.
func hasCapIPCLock() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_IPC_LOCK/32].Effective&(1<<(unix.CAP_IPC_LOCK%32)) != 0
}
