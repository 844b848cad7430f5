package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cofferhq/coffer/internal/doccheck"
)

// cliTruth describes the real command tree: every command, alias and flag
// cobra would accept, help and completion included.
func cliTruth(t *testing.T) *doccheck.Command {
	t.Helper()
	root := newRoot(context.Background(), strings.NewReader(""), io.Discard, io.Discard, nil)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command) *doccheck.Command
	walk = func(c *cobra.Command) *doccheck.Command {
		c.InitDefaultHelpFlag()
		out := &doccheck.Command{Flags: map[string]bool{}, Subs: map[string]*doccheck.Command{}}
		add := func(f *pflag.Flag) {
			out.Flags["--"+f.Name] = true
			if f.Shorthand != "" {
				out.Flags["-"+f.Shorthand] = true
			}
		}
		c.Flags().VisitAll(add)
		c.InheritedFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			s := walk(sub)
			out.Subs[sub.Name()] = s
			for _, a := range sub.Aliases {
				out.Subs[a] = s
			}
		}
		return out
	}
	return walk(root)
}

func docTruth(t *testing.T) doccheck.Truth {
	t.Helper()
	env, err := doccheck.CodeEnvNames(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	names, err := doccheck.CodeDottedNames(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// Dotted names the code builds rather than spells (each with why), so
	// the documents may name them although no literal holds them.
	for name, why := range map[string]string{
		"keys.wrapping_key": `transit's audit action "keys."+op`,
		"tokens.mac":        "a database column (table.column)",
		"record_index.mac":  "a database column (table.column)",
	} {
		_ = why
		names[name] = true
	}
	return doccheck.Truth{Root: cliTruth(t), Env: env, Names: names}
}

// TestDocsMatchCode fails when README.md, SECURITY.md, docs/, the SDK and
// example READMEs name a coffer command or flag, a COFFER_* variable or a
// config key that does not exist, or link to something that does not.
func TestDocsMatchCode(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := doccheck.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"README.md", "SECURITY.md", "docs/security/threat-model.md", "sdk/python/README.md", "sdk/typescript/README.md"} {
		if !contains(files, must) {
			t.Fatalf("the documents checked do not include %s: %v", must, files)
		}
	}
	findings, err := doccheck.Check(root, files, docTruth(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Error(f)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestDocsCheckCatchesPlanted runs the same check over documents with one
// planted mistake per line marked "<!-- want: TEXT -->": each must be
// found, on its line, and nothing else.
func TestDocsCheckCatchesPlanted(t *testing.T) {
	root := filepath.Join("testdata", "docs")
	files, err := doccheck.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("planted documents: %v", files)
	}
	findings, err := doccheck.Check(root, files, docTruth(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, f := range findings {
		key := f.File + ":" + strconv.Itoa(f.Line)
		got[key] = append(got[key], f.Msg)
	}
	wants := 0
	for _, file := range files {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			key := file + ":" + strconv.Itoa(i+1)
			_, want, ok := strings.Cut(line, "<!-- want: ")
			if !ok {
				if _, want, ok = strings.Cut(line, "# want: "); !ok {
					continue
				}
			}
			want = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(want), "-->"))
			wants++
			msgs := got[key]
			delete(got, key)
			if len(msgs) != 1 || !strings.Contains(msgs[0], want) {
				t.Errorf("%s: want one finding with %q, got %q", key, want, msgs)
			}
		}
	}
	for key, msgs := range got {
		t.Errorf("%s: unexpected findings %q", key, msgs)
	}
	if wants < 10 {
		t.Fatalf("only %d planted mistakes", wants)
	}
}
