package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
)

func TestBackupRestoreRotateRootCLI(t *testing.T) {
	tmp := t.TempDir()
	d1, d2 := filepath.Join(tmp, "d1"), filepath.Join(tmp, "d2")
	for _, d := range []string{d1, d2} {
		if code, _, errs := runCLI(t, "init", "--data-dir", d); code != 0 {
			t.Fatal(errs)
		}
	}
	file := filepath.Join(tmp, "b.backup")
	if code, out, errs := runCLI(t, "backup", "--data-dir", d1, "--out", file); code != 0 || !strings.Contains(out, "backup written") {
		t.Fatalf("backup: %d %s %s", code, out, errs)
	}
	r := filepath.Join(tmp, "r")
	code, _, errs := runCLI(t, "restore", "--data-dir", r, "--in", file, "--root-key-file", filepath.Join(d2, "root.key"))
	if code != 1 || !strings.Contains(errs, "wrong root key") {
		t.Fatalf("restore with another key: %d %q", code, errs)
	}
	if _, err := os.Stat(r); !os.IsNotExist(err) {
		t.Fatalf("failed restore left %s: %v", r, err)
	}
	if code, _, errs := runCLI(t, "restore", "--data-dir", r, "--in", file, "--root-key-file", filepath.Join(d1, "root.key")); code != 0 {
		t.Fatalf("restore: %s", errs)
	}
	if code, _, errs := runCLI(t, "keys", "rotate", "--data-dir", r, "tokens/index"); code != 1 || !strings.Contains(errs, "cannot be rotated") {
		t.Fatalf("rotate the token index key: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "keys", "rotate", "--data-dir", r, "index/x/y"); code != 1 || !strings.Contains(errs, "no such key") {
		t.Fatalf("rotate an index key that does not exist: %d %q", code, errs)
	}
	newKey := filepath.Join(tmp, "new.key")
	if err := keyprovider.CreateFile(newKey, rand.Reader); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "keys", "rotate-root", "--data-dir", r, "--new-root-key", newKey)
	if code != 0 || !strings.Contains(out, "WARNING") {
		t.Fatalf("rotate-root: %d %s %s", code, out, errs)
	}
	fi, err := os.Stat(filepath.Join(r, "root.key.old"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("old root key kept: %v %v", fi, err)
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--data-dir", r); code != 0 {
		t.Fatalf("the store under the new root key: %d %s %s", code, out, errs)
	}
	// The old key no longer opens the store.
	if err := os.Rename(filepath.Join(r, "root.key.old"), filepath.Join(r, "root.key")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(r, "coffer.yaml"))
	if err := os.WriteFile(filepath.Join(r, "coffer.yaml"), []byte(strings.Replace(string(b), newKey, "root.key", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "audit", "verify", "--data-dir", r); code == 0 || !strings.Contains(errs, "root key") {
		t.Fatalf("old root key after rotation: %d %q", code, errs)
	}
}

func TestInitRootKeyProviders(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	code, out, errs := runCLI(t, "init", "--data-dir", dir, "--shares", "3", "--threshold", "2", "--json")
	if code != 0 {
		t.Fatalf("init shamir: %s", errs)
	}
	var res struct {
		Shares []string `json:"unseal_shares"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Shares) != 3 {
		t.Fatalf("init --json shares: %q %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "root.key")); !os.IsNotExist(err) {
		t.Fatal("shamir init wrote a root key file")
	}
	backup := filepath.Join(t.TempDir(), "b")
	if code, _, errs := runCLI(t, "backup", "--data-dir", dir, "--out", backup); code != 1 || !strings.Contains(errs, "--unseal-shares-stdin") {
		t.Fatalf("offline backup of a sealed deployment: %d %q", code, errs)
	}
	// With shares on stdin an offline command unseals for itself: too few
	// or a forged one are refused, enough (in any order) work.
	forged := res.Shares[0][:len(res.Shares[0])-2] + "AA"
	for _, tc := range []struct {
		name, stdin string
		ok          bool
	}{
		{"one share of two", res.Shares[1] + "\n", false},
		{"a forged share", res.Shares[0] + "\n" + forged + "\n", false},
		{"no share", "\n\n", false},
		{"two shares", res.Shares[2] + "\n\n" + res.Shares[0] + "\n", true},
	} {
		code, out, errs := runCLIIn(t, tc.stdin, "backup", "--data-dir", dir, "--out", backup, "--unseal-shares-stdin")
		if (code == 0) != tc.ok || strings.Contains(errs, "unknown flag") {
			t.Fatalf("backup, %s: %d %q %q", tc.name, code, out, errs)
		}
		if !tc.ok && !strings.Contains(errs, "share") {
			t.Fatalf("backup, %s: the error does not say what is wrong with the shares: %q", tc.name, errs)
		}
		for _, sh := range res.Shares {
			if strings.Contains(out+errs, sh) {
				t.Fatalf("backup, %s: a share was echoed", tc.name)
			}
		}
	}
	if code, out, errs := runCLIIn(t, res.Shares[0]+"\n"+res.Shares[1]+"\n", "audit", "verify", "--data-dir", dir, "--unseal-shares-stdin"); code != 0 {
		t.Fatalf("audit verify with shares: %d %q %q", code, out, errs)
	}
	// The backup restores into a new shamir deployment: its check file and
	// enough shares, never a key file; too few shares leave nothing behind.
	restored := filepath.Join(t.TempDir(), "r")
	check := filepath.Join(dir, "root-key.check")
	if code, _, errs := runCLIIn(t, res.Shares[1]+"\n", "restore", "--data-dir", restored, "--in", backup,
		"--root-key-check-file", check, "--unseal-shares-stdin"); code == 0 || !strings.Contains(errs, "shares") {
		t.Fatalf("restore with one share: %d %q", code, errs)
	}
	if _, err := os.Stat(restored); !os.IsNotExist(err) {
		t.Fatalf("a refused restore left %s behind: %v", restored, err)
	}
	if code, _, errs := runCLIIn(t, res.Shares[1]+"\n"+res.Shares[2]+"\n", "restore", "--data-dir", restored, "--in", backup,
		"--root-key-check-file", check, "--unseal-shares-stdin"); code != 0 {
		t.Fatalf("restore with shares: %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(restored, "root.key")); !os.IsNotExist(err) {
		t.Fatal("a shamir restore wrote a root key file")
	}
	if code, out, errs := runCLIIn(t, res.Shares[0]+"\n"+res.Shares[2]+"\n", "audit", "verify", "--data-dir", restored, "--unseal-shares-stdin"); code != 0 {
		t.Fatalf("audit verify of the restored deployment: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "restore", "--data-dir", filepath.Join(t.TempDir(), "z"), "--in", backup); code != 2 {
		t.Fatalf("restore without any root key: %d %q", code, errs)
	}
	if code, _, errs := runCLIIn(t, "x\n", "audit", "verify", "--data-dir", filepath.Join(t.TempDir(), "f"), "--unseal-shares-stdin"); code == 0 {
		t.Fatalf("--unseal-shares-stdin on a deployment that does not exist: %q", errs)
	}
	if code, _, errs := runCLI(t, "init", "--data-dir", filepath.Join(t.TempDir(), "x"), "--shares", "3"); code != 1 || !strings.Contains(errs, "threshold") {
		t.Fatalf("shares without threshold: %d %q", code, errs)
	}
	code, _, errs = runCLI(t, "init", "--data-dir", filepath.Join(t.TempDir(), "p"), "--root-key-provider", "pkcs11",
		"--pkcs11-module", "/nonexistent/libsofthsm2.so", "--pkcs11-token-label", "coffer", "--pkcs11-key-label", "root")
	if code != 1 || !strings.Contains(errs, "PKCS#11") {
		t.Fatalf("pkcs11 init: %d %q", code, errs)
	}
}

// serveRequests opens the deployment in dir as `coffer serve` would, sends
// it n requests with a bogus token (each denied, each audited) and shuts it
// down, which signs the final audit checkpoint.
func serveRequests(t *testing.T, dir string, env []string, n int) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load(dir, env)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := app.Open(ctx, cfg, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		req := httptest.NewRequest("GET", "/v1/collections", nil)
		req.Header.Set("Authorization", "Bearer not-a-token")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != 401 {
			t.Fatalf("request with a bogus token: %d %s", rec.Code, rec.Body)
		}
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRotateAuditKeysCLI: `coffer keys rotate` rotates both audit keys
// offline between two runs of a node, and `coffer audit verify` checks the
// log (database and file) across both versions, and still catches an
// edited key version.
func TestRotateAuditKeysCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, errs := runCLI(t, "init", "--data-dir", dir); code != 0 {
		t.Fatal(errs)
	}
	file := filepath.Join(dir, "audit.jsonl")
	env := []string{"COFFER_AUDIT_FILE=" + file}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb, env)
		return code, out.String(), errb.String()
	}
	serveRequests(t, dir, env, 3)
	for key, want := range map[string]string{
		"audit/hmac":    "audit/hmac rotated: version 2 now chains the audit log",
		"audit/signing": "audit/signing rotated: version 2 now signs audit checkpoints",
	} {
		if code, out, errs := cli("keys", "rotate", "--data-dir", dir, key); code != 0 || !strings.Contains(out, want) {
			t.Fatalf("rotate %s: %d %q %q", key, code, out, errs)
		}
	}
	// 3 served events, and the two rotations' own events on the offline
	// chain (before and after each): the first before audit/hmac moved
	// to version 2, the other three after.
	if code, out, errs := cli("audit", "verify", "--data-dir", dir); code != 0 || out != "ok: 7 events\n" {
		t.Fatalf("verify after the rotation: %d %q %q", code, out, errs)
	}
	serveRequests(t, dir, env, 4)
	if code, out, errs := cli("audit", "verify", "--data-dir", dir); code != 0 || out != "ok: 11 events\n" {
		t.Fatalf("verify across both key versions: %d %q %q", code, out, errs)
	}
	_, tail, _ := cli("audit", "tail", "--data-dir", dir, "--since", "1h")
	if strings.Count(tail, `"key_version":1`) != 4 || strings.Count(tail, `"key_version":2`) != 7 {
		t.Fatalf("audit tail does not show 4 events of version 1 and 7 of version 2:\n%s", tail)
	}

	// An event of the new version relabelled in the file: verify names it.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var id string
	for i, l := range lines {
		if strings.Contains(l, `"key_version":2`) && strings.Contains(l, `"kind":"event"`) {
			var line struct {
				Event struct {
					ID string `json:"id"`
				} `json:"event"`
			}
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
			id, lines[i] = line.Event.ID, strings.Replace(l, `"key_version":2`, `"key_version":3`, 1)
			break
		}
	}
	if id == "" {
		t.Fatalf("no event of version 2 in the audit file:\n%s", b)
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := cli("audit", "verify", "--data-dir", dir)
	if code != 1 || !strings.Contains(errs, "audit file") || !strings.Contains(errs, "event "+id) || !strings.Contains(errs, "version 3") {
		t.Fatalf("verify of a relabelled event: %d %q", code, errs)
	}
}
