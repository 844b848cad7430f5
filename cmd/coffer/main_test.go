package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, nil)
	return code, out.String(), errb.String()
}

// runCLIIn is runCLI with stdin as the standard input.
func runCLIIn(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runIn(context.Background(), args, strings.NewReader(stdin), &out, &errb, nil)
	return code, out.String(), errb.String()
}

func TestInitJSONAndRefuseReinit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, out, errs := runCLI(t, "init", "--data-dir", dir, "--json")
	if code != 0 {
		t.Fatalf("init: %d %s", code, errs)
	}
	var res map[string]string
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("init --json printed no JSON object: %q", out)
	}
	if dec.More() {
		t.Fatalf("init --json printed more than one value: %q", out)
	}
	for _, k := range []string{"url", "client_id", "client_secret", "ca_cert"} {
		if res[k] == "" {
			t.Fatalf("init --json lacks %s: %q", k, out)
		}
	}
	if len(res) != 4 || res["url"] != "https://127.0.0.1:8443" || res["ca_cert"] != filepath.Join(dir, "tls", "ca.pem") {
		t.Fatalf("init --json object: %v", res)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode: %v %v", fi.Mode(), err)
	}
	for _, f := range []string{"root.key", "coffer.db", "coffer.yaml", "tls/ca-key.pem", "tls/server-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode: %v %v", f, fi, err)
		}
	}
	code, _, errs = runCLI(t, "init", "--data-dir", dir, "--json")
	if code != 1 || !strings.Contains(errs, "already initialised") {
		t.Fatalf("re-init: %d %q", code, errs)
	}
}

func TestServeRefusesWrongRootKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, errs := runCLI(t, "init", "--data-dir", dir); code != 0 {
		t.Fatal(errs)
	}
	other := filepath.Join(t.TempDir(), "other")
	if code, _, errs := runCLI(t, "init", "--data-dir", other); code != 0 {
		t.Fatal(errs)
	}
	key, err := os.ReadFile(filepath.Join(other, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "root key") {
		t.Fatalf("serve with a wrong root key: %d %q", code, errs)
	}
}

func TestServeRefusesUninitialisedDir(t *testing.T) {
	code, _, errs := runCLI(t, "serve", "--data-dir", t.TempDir())
	if code != 1 || !strings.Contains(errs, "coffer init") {
		t.Fatalf("serve of an empty dir: %d %q", code, errs)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "coffer ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestPolicyTest(t *testing.T) {
	code, out, errs := runCLI(t, "policy", "test", "--policy", "testdata/policy.yaml", "testdata/policy_tests.yaml")
	if code != 0 || !strings.Contains(out, "5 passed, 0 failed") {
		t.Fatalf("policy test: %d %s %s", code, out, errs)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	b, _ := os.ReadFile("testdata/policy_tests.yaml")
	_ = os.WriteFile(bad, bytes.Replace(b, []byte("expect: deny"), []byte("expect: allow"), 1), 0o600)
	code, out, _ = runCLI(t, "policy", "test", "--policy", "testdata/policy.yaml", bad)
	if code != 1 || !strings.Contains(out, "4 passed, 1 failed") {
		t.Fatalf("a failing policy test: %d %s", code, out)
	}
}

func TestAuditTail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, errs := runCLI(t, "init", "--data-dir", dir); code != 0 {
		t.Fatal(errs)
	}
	// A fresh deployment has no requests yet: tail prints nothing, exit 0.
	code, out, errs := runCLI(t, "audit", "tail", "--data-dir", dir, "--since", "1h")
	if code != 0 || out != "" {
		t.Fatalf("tail of an empty log: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "audit", "verify", "--data-dir", dir)
	if code != 0 || !strings.HasPrefix(out, "ok: 0 events") {
		t.Fatalf("verify of an empty log: %d %q", code, out)
	}
}

func TestDoctor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, errs := runCLI(t, "init", "--data-dir", dir); code != 0 {
		t.Fatal(errs)
	}
	// A fresh deployment: the bootstrap policy gives admin everything without MFA.
	code, out, _ := runCLI(t, "doctor", "--data-dir", dir)
	if code != 1 || !strings.Contains(out, "policy.admin_without_mfa") || !strings.Contains(out, "clients.bootstrap_admin") {
		t.Fatalf("doctor on a fresh deployment: %d\n%s", code, out)
	}
	// A root key readable by others is high too.
	if err := os.Chmod(filepath.Join(dir, "root.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "doctor", "--data-dir", dir, "--json")
	if code != 1 || !strings.Contains(out, `"root_key.permissions"`) {
		t.Fatalf("doctor with a 0644 root key: %d\n%s", code, out)
	}
}

// TestAPICommandsWired: the API commands sit beside the offline ones
// (policy test keeps working, see TestPolicyTest), shell completion is
// served, a usage error exits 2, and a command before login says to log in.
func TestAPICommandsWired(t *testing.T) {
	env := []string{"COFFER_CONFIG_DIR=" + t.TempDir()}
	runCLI := func(t *testing.T, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb, env)
		return code, out.String(), errb.String()
	}
	code, out, _ := runCLI(t, "completion", "bash")
	if code != 0 || !strings.Contains(out, "bash completion") {
		t.Fatalf("completion: %d", code)
	}
	for _, args := range [][]string{{"clients", "list", "-o", "xml"}, {"records", "search", "c"}} {
		if code, _, errs := runCLI(t, args...); code != 2 {
			t.Fatalf("%v: exit %d %s", args, code, errs)
		}
	}
	if code, _, errs := runCLI(t, "records", "get", "c", "id"); code != 1 || !strings.Contains(errs, "coffer login") {
		t.Fatalf("before login: exit %d %s", code, errs)
	}
}
