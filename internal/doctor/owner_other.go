//go:build !unix

package doctor

import "io/fs"

// foreignOwner cannot tell a file's owner on this system: it reports none.
func foreignOwner(fs.FileInfo) (uid uint32, foreign bool) { return 0, false }

// sameDevice cannot tell a file's device on this system.
func sameDevice(_, _ fs.FileInfo) (same, known bool) { return false, false }
