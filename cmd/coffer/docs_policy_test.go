package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/policy"
)

// fencedBlock is a fenced code block of a Markdown document, with its
// language and the heading it is under.
type fencedBlock struct {
	lang, heading, text string
}

// fencedBlocks returns the fenced code blocks of a Markdown document.
func fencedBlocks(t *testing.T, path string) []fencedBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []fencedBlock
		cur     *fencedBlock
		heading string
		lines   []string
	)
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &fencedBlock{lang: strings.TrimPrefix(line, "```"), heading: heading}
			lines = nil
		case cur != nil && line == "```":
			cur.text = strings.Join(lines, "\n") + "\n"
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			lines = append(lines, line)
		case strings.HasPrefix(line, "#"):
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
		}
	}
	return out
}

// TestPolicyDocExamples checks docs/policy.md: every policy in it loads,
// every condition in its examples compiles, and the worked example passes
// its own tests, through `coffer policy test` as the page shows.
func TestPolicyDocExamples(t *testing.T) {
	blocks := fencedBlocks(t, filepath.Join("..", "..", "docs", "policy.md"))
	var (
		policies   int
		worked     string
		workedTest string
	)
	for _, b := range blocks {
		switch {
		case b.lang == "yaml" && strings.HasPrefix(b.text, "roles:"):
			if _, err := policy.Load([]byte(b.text), "yaml"); err != nil {
				t.Errorf("a policy under %q does not load: %v\n%s", b.heading, err, b.text)
			}
			policies++
			if b.heading == "A worked example" {
				worked = b.text
			}
		case b.lang == "yaml" && strings.HasPrefix(b.text, "tests:") && b.heading == "A worked example":
			workedTest = b.text
		case b.lang == "text" && b.heading == "Conditions (`when`)":
			var doc strings.Builder
			doc.WriteString("roles:\n  r:\n")
			for _, cond := range strings.Split(strings.TrimSpace(b.text), "\n") {
				doc.WriteString("    - resources: [\"*\"]\n      actions: [read]\n      when: '" + strings.ReplaceAll(cond, "'", "''") + "'\n")
			}
			if _, err := policy.Load([]byte(doc.String()), "yaml"); err != nil {
				t.Errorf("a condition example does not compile: %v", err)
			}
		}
	}
	if policies < 2 || worked == "" || workedTest == "" {
		t.Fatalf("docs/policy.md: %d policies, worked example found %v, its tests found %v", policies, worked != "", workedTest != "")
	}
	dir := t.TempDir()
	pf, tf := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "policy_tests.yaml")
	if err := os.WriteFile(pf, []byte(worked), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tf, []byte(workedTest), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "policy", "test", "--policy", pf, tf)
	n := strings.Count(workedTest, "\n  - name:")
	if code != 0 || !strings.Contains(out, strconv.Itoa(n)+" passed, 0 failed") {
		t.Fatalf("the worked example fails its tests: %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(string(mustRead(t, filepath.Join("..", "..", "docs", "policy.md"))), strconv.Itoa(n)+" passed, 0 failed") {
		t.Errorf("docs/policy.md shows another count than the %d tests of its worked example", n)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
