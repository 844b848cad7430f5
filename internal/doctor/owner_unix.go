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
