package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyBreakGlassCLI: `coffer policy apply --data-dir DIR FILE`
// puts a document in force in the store, refusing one under which no
// client or user could change the policy again unless --force, and
// `coffer policy get` prints it; each run is on the offline audit chain,
// and the chain verifies (#14.6).
func TestPolicyBreakGlassCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, errs := runCLI(t, "init", "--data-dir", dir); code != 0 {
		t.Fatal(errs)
	}
	files := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lockout := write("lockout.yaml", "roles:\n  reader:\n    - resources: [\"collections/*\"]\n      actions: [read]\n")
	good := write("good.json", `{"roles":{"admin":[{"resources":["*"],"actions":["*"]}]}}`)

	code, _, errs := runCLI(t, "policy", "apply", "--data-dir", dir, lockout)
	if code != 1 || !strings.Contains(errs, "no principal could change the policy again") || !strings.Contains(errs, "no role grants update on policy") {
		t.Fatalf("apply of a lockout: %d %q", code, errs)
	}
	if code, out, errs := runCLI(t, "policy", "apply", "--data-dir", dir, "--force", lockout); code != 0 || !strings.Contains(out, "policy version 1 in force") {
		t.Fatalf("forced apply: %d %q %q", code, out, errs)
	}
	if code, out, errs := runCLI(t, "policy", "apply", "--data-dir", dir, good); code != 0 || !strings.Contains(out, "policy version 2 in force") {
		t.Fatalf("apply: %d %q %q", code, out, errs)
	}
	if code, out, errs := runCLI(t, "policy", "get", "--data-dir", dir); code != 0 || out != `{"roles":{"admin":[{"resources":["*"],"actions":["*"]}]}}` {
		t.Fatalf("get: %d %q %q", code, out, errs)
	}
	// Without --data-dir, policy get is the API command (internal/cli).
	if code, _, errs := runCLI(t, "policy", "get"); code != 1 || !strings.Contains(errs, "coffer login") {
		t.Fatalf("get without a data directory: %d %q", code, errs)
	}
	got := offlineEvents(t, dir)
	want := []string{
		"policy.apply policy started", "policy.apply policy invalid",
		"policy.apply_forced policy started", "policy.apply_forced policy done",
		"policy.apply policy started", "policy.apply policy done",
		"policy.get policy started", "policy.get policy done",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("offline audit events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("audit verify: %d %q %q", code, out, errs)
	}
}
