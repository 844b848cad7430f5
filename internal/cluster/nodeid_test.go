package cluster_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/cluster"
)

// TestResolveIDKeepsMovesAndAdopts: an id is made once and kept; a copy of
// the directory elsewhere, or on another host, makes its own; a directory
// without an id file adopts the legacy name it is given; a file that is
// not an id file is refused, never overwritten.
func TestResolveIDKeepsMovesAndAdopts(t *testing.T) {
	dir := t.TempDir()
	id, src, err := cluster.ResolveID(dir, "host-a", "", rand.Reader)
	if err != nil || src != cluster.IDGenerated || !strings.HasPrefix(id, "host-a-") || !cluster.ValidID(id) {
		t.Fatalf("first = %q %q %v", id, src, err)
	}
	fi, err := os.Stat(filepath.Join(dir, cluster.IDFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("id file: %v %v", fi, err)
	}
	if again, src, err := cluster.ResolveID(dir, "host-a", "legacy", rand.Reader); err != nil || again != id || src != cluster.IDKept {
		t.Fatalf("again = %q %q %v, want %q kept", again, src, err, id)
	}
	if kept, ok := cluster.KeptID(dir, "host-a"); !ok || kept != id {
		t.Fatalf("KeptID = %q %v", kept, ok)
	}
	if _, ok := cluster.KeptID(dir, "host-b"); ok {
		t.Fatal("KeptID gave the id to another host")
	}
	other, src, err := cluster.ResolveID(dir, "host-b", "", rand.Reader)
	if err != nil || other == id || src != cluster.IDCopied {
		t.Fatalf("on another host = %q %q %v", other, src, err)
	}

	copied := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(dir, cluster.IDFileName))
	if err := os.WriteFile(filepath.Join(copied, cluster.IDFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if cid, src, err := cluster.ResolveID(copied, "host-b", "", rand.Reader); err != nil || cid == other || src != cluster.IDCopied {
		t.Fatalf("copied dir = %q %q %v", cid, src, err)
	}

	fresh := t.TempDir()
	if lid, src, err := cluster.ResolveID(fresh, "host-a", "old-host", rand.Reader); err != nil || lid != "old-host" || src != cluster.IDLegacy {
		t.Fatalf("legacy = %q %q %v", lid, src, err)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, cluster.IDFileName), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cluster.ResolveID(bad, "host-a", "", rand.Reader); err == nil {
		t.Fatal("a damaged id file was replaced")
	}
	if b, _ := os.ReadFile(filepath.Join(bad, cluster.IDFileName)); string(b) != "not json" {
		t.Fatal("the damaged id file was changed")
	}
}

// TestNewIDIsSafeForAnyHostName: whatever the host name, the id is a
// valid node id.
func TestNewIDIsSafeForAnyHostName(t *testing.T) {
	for _, h := range []string{"", "a b\tc", strings.Repeat("x", 300), "ünï.cöde", "host/with/slash"} {
		id, err := cluster.NewID(h, rand.Reader)
		if err != nil || !cluster.ValidID(id) || strings.ContainsAny(id, " /\t") {
			t.Fatalf("NewID(%q) = %q, %v", h, id, err)
		}
	}
}

// TestCheckSchema: older database refused; equal served; newer served
// only down to the recorded floor.
func TestCheckSchema(t *testing.T) {
	for _, c := range []struct {
		db, bin, floor int64
		ok, newer      bool
	}{
		{10, 15, 0, false, false},
		{15, 15, 0, true, false},
		{16, 15, 0, true, true},
		{16, 15, 15, true, true},
		{17, 15, 16, false, true},
	} {
		newer, err := cluster.CheckSchema(c.db, c.bin, c.floor)
		if (err == nil) != c.ok || newer != c.newer {
			t.Errorf("CheckSchema(%d, %d, %d) = %v, %v", c.db, c.bin, c.floor, newer, err)
		}
	}
}
