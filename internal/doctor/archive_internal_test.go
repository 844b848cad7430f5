package doctor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
)

// TestAuditArchiveFindings: an archive directory that is missing, or that
// cannot be written (a file where the directory should be stands for a
// full or read-only volume, even to root), is a high finding: pruning has
// stopped; a writable one on another volume is none.
func TestAuditArchiveFindings(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, archive, want string
		prep                func(string)
	}{
		{"missing", filepath.Join(dir, "nope"), "audit.archive_unwritable", nil},
		{"not a directory", filepath.Join(dir, "file"), "audit.archive_unwritable", func(p string) { _ = os.WriteFile(p, []byte("x"), 0o600) }},
		{"writable", filepath.Join(dir, "ok"), "", func(p string) { _ = os.Mkdir(p, 0o700) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.prep != nil {
				c.prep(c.archive)
			}
			cfg := &config.Config{Audit: config.Audit{Archive: c.archive}, DataDir: "/nonexistent-data-dir"}
			got := checkAuditArchive(&state{cfg: cfg})
			switch {
			case c.want == "" && len(got) != 0:
				t.Fatalf("findings %+v", got)
			case c.want != "" && (len(got) != 1 || got[0].ID != c.want || got[0].Severity != High):
				t.Fatalf("findings %+v, want %s (high)", got, c.want)
			}
		})
	}
}
