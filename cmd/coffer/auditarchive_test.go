package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestAuditArchiveCommands runs `coffer audit archive`, `verify` (whole,
// and --segments) and `search --archive` themselves, on both backends, on
// the offline chain that key rotations write.
func TestAuditArchiveCommands(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			arch := filepath.Join(t.TempDir(), "archive")
			initArgs := []string{"init", "--data-dir", dir}
			if b.Name != "sqlite" {
				initArgs = append(initArgs, "--database-url", b.DSN(t))
			}
			if code, _, errs := runCLI(t, initArgs...); code != 0 {
				t.Fatal(errs)
			}
			env := []string{"COFFER_AUDIT_ARCHIVE=" + arch}
			cli := func(args ...string) (int, string, string) {
				var out, errb bytes.Buffer
				code := run(context.Background(), args, &out, &errb, env)
				return code, out.String(), errb.String()
			}
			for range 3 {
				if code, _, errs := cli("keys", "rotate", "--data-dir", dir, "audit/hmac"); code != 0 {
					t.Fatalf("rotate: %s", errs)
				}
			}
			// Six events sealed (a checkpoint closes each run); the archive
			// run's own first event is the chain's head, kept.
			code, out, errs := cli("audit", "archive", "--data-dir", dir, "--before", "0s")
			if code != 0 || !strings.Contains(out, "archived 1 segments (6 events") || !strings.Contains(out, "pruned 1 segments (6 events)") {
				t.Fatalf("archive: %d %q %q", code, out, errs)
			}
			if code, out, errs := cli("audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "archive: 1 segments, 8 events") || !strings.HasSuffix(out, "ok: 8 events\n") {
				t.Fatalf("verify: %d %q %q", code, out, errs)
			}
			cfg, err := config.Load(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			seg := cfg.Node + "/offline:1-6"
			if code, out, errs := cli("audit", "verify", "--data-dir", dir, "--segments", seg); code != 0 || !strings.HasSuffix(out, "ok: 6 events\n") {
				t.Fatalf("verify --segments: %d %q %q", code, out, errs)
			}
			if code, out, errs := cli("audit", "verify", "--data-dir", dir, "--segments", cfg.Node+"/offline:1-5"); code != 1 || !strings.Contains(errs, "is not in the archive") {
				t.Fatalf("verify --segments of one that is not there: %d %q %q", code, out, errs)
			}
			code, out, errs = cli("audit", "search", "--archive", arch, "--since", "24h")
			if code != 0 || strings.Count(out, "\n") != 6 || !strings.Contains(out, `"node":"`+cfg.Node+`/offline"`) {
				t.Fatalf("search: %d %q %q", code, out, errs)
			}
			if code, out, _ := cli("audit", "search", "--archive", arch, "--principal", "nobody"); code != 0 || out != "" {
				t.Fatalf("search for nobody: %d %q", code, out)
			}
		})
	}
}
