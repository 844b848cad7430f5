//go:build linux

package harden

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// hasCapIPCLock agrees with the kernel's own account in /proc/self/status.
func TestHasCapIPCLock(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		if want := eff&(1<<14) != 0; hasCapIPCLock() != want {
			t.Fatalf("hasCapIPCLock() = %v, /proc says %v", !want, want)
		}
		return
	}
	t.Fatal("no CapEff line in /proc/self/status")
}
