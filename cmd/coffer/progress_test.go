package main

import (
	"crypto/rand"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
)

// TestLongCommandsShowProgress: backup, restore and rotate-root write
// their progress on standard error (standard output keeps its report):
// off a terminal, plain lines with the count of the total and the time
// taken, no control characters; with -q nothing (#20).
func TestLongCommandsShowProgress(t *testing.T) {
	tmp := t.TempDir()
	live := filepath.Join(tmp, "live")
	if code, _, errs := runCLI(t, "init", "--data-dir", live); code != 0 {
		t.Fatal(errs)
	}
	file := filepath.Join(tmp, "b.backup")
	code, out, errs := runCLI(t, "backup", "--data-dir", live, "--out", file)
	if code != 0 || !strings.Contains(out, "backup written") {
		t.Fatalf("backup: %d %s %s", code, out, errs)
	}
	final := regexp.MustCompile(`(?m)^backup: rows: (\d+)/(\d+) \(100%\), done in [0-9.]+m?s`)
	if m := final.FindStringSubmatch(errs); m == nil || m[1] != m[2] || m[1] == "0" {
		t.Fatalf("backup progress on stderr: %q", errs)
	}
	if strings.ContainsAny(errs, "\r\033") || strings.Contains(out, "rows:") {
		t.Errorf("progress off a terminal: stdout %q stderr %q", out, errs)
	}
	if code, _, errs := runCLI(t, "backup", "--data-dir", live, "--out", file, "-q"); code != 0 || errs != "" {
		t.Fatalf("backup -q: %d %q", code, errs)
	}

	code, out, errs = runCLI(t, "restore", "--data-dir", filepath.Join(tmp, "r"), "--in", file,
		"--root-key-file", filepath.Join(live, "root.key"))
	if code != 0 || !regexp.MustCompile(`(?m)^restore: backup read: [0-9.]+ KiB/[0-9.]+ KiB \(100%\), done in `).MatchString(errs) {
		t.Fatalf("restore: %d %s %q", code, out, errs)
	}

	newKey := filepath.Join(tmp, "new.key")
	if err := keyprovider.CreateFile(newKey, rand.Reader); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, "keys", "rotate-root", "--data-dir", filepath.Join(tmp, "r"), "--new-root-key", newKey)
	if code != 0 || !regexp.MustCompile(`(?m)^rotate-root: data key versions: (\d+)/(\d+) \(100%\), done in `).MatchString(errs) {
		t.Fatalf("rotate-root: %d %s %q", code, out, errs)
	}
}
