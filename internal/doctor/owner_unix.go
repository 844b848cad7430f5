//go:build unix

package doctor

import (
	"io/fs"
	"os"
	"syscall"
)

// foreignOwner reports whether fi belongs to a user other than the one
// running the doctor, and that user's id.
func foreignOwner(fi fs.FileInfo) (uid uint32, foreign bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	me := os.Getuid()
	return st.Uid, me >= 0 && uint64(st.Uid) != uint64(me)
}

// sameDevice reports whether a and b are on one file system, and whether
// that could be told.
func sameDevice(a, b fs.FileInfo) (same, known bool) {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return false, false
	}
	return sa.Dev == sb.Dev, true
}
