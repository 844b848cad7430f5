package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/loadgen"
)

// TestBenchCLI runs `coffer bench` against `coffer dev` with the
// credentials given as flags and environment: it prints the table, writes
// the JSON report and the SVG plot, and refuses a bad command line with
// exit status 2.
func TestBenchCLI(t *testing.T) {
	dir, url := startDev(t)
	b, err := os.ReadFile(filepath.Join(dir, "dev-credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var creds struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		CACert       string `json:"ca_cert"`
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	env := []string{"COFFER_CLIENT_SECRET=" + creds.ClientSecret, "COFFER_CONFIG_DIR=" + out}
	args := []string{"bench", "--url", url, "--ca-file", creds.CACert, "--client-id", creds.ClientID,
		"--scenarios", "healthz,encrypt,batch", "--batch", "5", "--concurrency", "1,2", "--duration", "100ms",
		"--json", filepath.Join(out, "r.json"), "--svg", filepath.Join(out, "r.svg"), "-o", "table"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr, env); code != 0 {
		t.Fatalf("coffer bench exited %d: %s", code, stderr.String())
	}
	for _, want := range []string{"SCENARIO", "healthz", "encrypt", "batch"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "[6/6]") {
		t.Errorf("no progress line for the last step:\n%s", stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), creds.ClientSecret) {
		t.Error("the client secret was printed")
	}
	var rep loadgen.Report
	rb, err := os.ReadFile(filepath.Join(out, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rb, &rep); err != nil || len(rep.Summary) != 6 || rep.Labels["surface"] != "coffer" {
		t.Fatalf("report: %v, %d summaries, labels %v", err, len(rep.Summary), rep.Labels)
	}
	if sv, err := os.ReadFile(filepath.Join(out, "r.svg")); err != nil || !bytes.HasPrefix(sv, []byte("<svg ")) {
		t.Fatalf("plot: %v %.40q", err, sv)
	}
	// --from prints and plots an earlier report without running anything.
	stdout.Reset()
	replot := []string{"bench", "--from", filepath.Join(out, "r.json"), "--svg", filepath.Join(out, "again.svg"), "-o", "json"}
	if code := run(context.Background(), replot, &stdout, &stderr, nil); code != 0 {
		t.Fatalf("--from exited %d: %s", code, stderr.String())
	}
	var again loadgen.Report
	if err := json.Unmarshal(stdout.Bytes(), &again); err != nil || len(again.Summary) != 6 {
		t.Fatalf("--from printed %v, %d summaries", err, len(again.Summary))
	}
	if sv, err := os.ReadFile(filepath.Join(out, "again.svg")); err != nil || !bytes.HasPrefix(sv, []byte("<svg ")) {
		t.Fatalf("--from plot: %v", err)
	}
	for _, bad := range [][]string{
		{"bench", "--surface", "grpc", "--url", url, "--ca-file", creds.CACert, "--client-id", creds.ClientID},
		{"bench", "--concurrency", "0", "--url", url, "--ca-file", creds.CACert, "--client-id", creds.ClientID},
		{"bench", "--url", url, "--ca-file", creds.CACert}, // no credential
		{"bench", "--url", url, "--ca-file", creds.CACert, "--client-id", creds.ClientID, "--scenarios", "nope"},
	} {
		stderr.Reset()
		if code := run(context.Background(), bad, &stdout, &stderr, []string{"COFFER_CLIENT_SECRET=" + creds.ClientSecret}); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", bad, code, stderr.String())
		}
	}
}
