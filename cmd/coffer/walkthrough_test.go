package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// startDev runs `coffer dev` on a free port in a temporary data directory
// and returns its data directory and URL; it stops with the test.
func startDev(t *testing.T) (dir, url string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), ".coffer-dev")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		// Its metrics listener on a free port (of another loopback address:
		// it must differ from listen) too: other tests (and packages
		// tested at the same time) serve metrics on the default one.
		code := run(ctx, []string{"dev", "--data-dir", dir, "--listen", "127.0.0.1:0"}, pw, &errb, []string{"COFFER_METRICS_LISTEN=127.0.0.2:0"})
		pw.Close()
		done <- code
	}()
	t.Cleanup(func() {
		cancel()
		go func() { _, _ = io.Copy(io.Discard, pr) }()
		if code := <-done; code != 0 {
			t.Errorf("coffer dev exited %d: %s", code, errb.String())
		}
	})
	// printDev writes "Coffer dev server (…) at https://ADDR" once serving.
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if _, after, ok := strings.Cut(sc.Text(), " at https://"); ok {
			url = "https://" + strings.TrimSpace(after)
			break
		}
	}
	if url == "" {
		t.Fatalf("coffer dev printed no URL: %s", errb.String())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return dir, url
}

// TestWalkthrough runs docs/walkthrough.sh, which the README shows, against
// `coffer dev`: every step must print and succeed. It also checks the
// README shows exactly the script, and that a failed step stops the script
// with Coffer's error instead of carrying on.
func TestWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	script := filepath.Join("..", "..", "docs", "walkthrough.sh")
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(b), "\n") // without the #! line
	if !strings.Contains(string(readme), "```bash\n"+body+"```\n") {
		t.Fatal("README.md's walk-through is not docs/walkthrough.sh (without its #! line): copy it again")
	}
	dir, url := startDev(t)
	runScript := func(env ...string) (string, error) {
		cmd := exec.Command("bash", script)
		cmd.Env = append(os.Environ(), append([]string{"DIR=" + dir, "URL=" + url}, env...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, pass := range []string{"first", "again (the collection exists)"} {
		out, err := runScript()
		if err != nil {
			t.Fatalf("walk-through, %s run: %v\n%s", pass, err, out)
		}
		for _, want := range []string{"== 1.", "token: ", "== 2.", "== 3.", "record: ", "== 4.", "Ada Lovelace",
			`"records":[`, "== 5.", `"tokens":["`, "== done"} {
			if !strings.Contains(out, want) {
				t.Fatalf("walk-through, %s run, printed no %q:\n%s", pass, want, out)
			}
		}
		if strings.Contains(out, `"tokens":["4111111111111111"`) {
			t.Fatalf("the card token is the card number:\n%s", out)
		}
	}
	// A wrong secret: step 1 fails loudly, and nothing after it runs.
	creds := filepath.Join(dir, "dev-credentials.json")
	orig, err := os.ReadFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(orig, []byte(`"client_secret": "`), []byte(`"client_secret": "x`), 1)
	if err := os.WriteFile(creds, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.WriteFile(creds, orig, 0o600) }()
	out, err := runScript()
	if err == nil || !strings.Contains(out, "invalid_client") || strings.Contains(out, "== 2.") {
		t.Fatalf("a failed token request must stop the walk-through with the error: %v\n%s", err, out)
	}
}
