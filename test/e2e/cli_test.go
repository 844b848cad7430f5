package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/cli"
)

// cliRun runs one coffer command line of the API commands in-process, with
// COFFER_CONFIG_DIR set to cfgDir and stdin as standard input; every
// answer it receives is checked against the OpenAPI document.
func (n *node) cliRun(t *testing.T, cfgDir, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := &cobra.Command{Use: "coffer", SilenceUsage: true, SilenceErrors: true}
	var out, errOut bytes.Buffer
	env := map[string]string{"COFFER_CONFIG_DIR": cfgDir}
	cli.AddCommands(root, cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) string { return env[k] }, Transport: n.Contract.Transport}, cli.OfflinePolicy{})
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// mustCLI runs a command line that has to succeed and decodes its JSON
// output into v (if not nil).
func (n *node) mustCLI(t *testing.T, cfgDir, stdin string, v any, args ...string) string {
	t.Helper()
	out, errOut, err := n.cliRun(t, cfgDir, stdin, args...)
	if err != nil {
		t.Fatalf("coffer %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	if v != nil {
		mustJSON(t, []byte(out), v)
	}
	return out
}

// TestCLI: the API commands over real HTTPS, from login on (#20 item 6).
func TestCLI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		cfg := filepath.Join(t.TempDir(), "config")

		// Before login: a clear error.
		if _, _, err := n.cliRun(t, cfg, "", "clients", "list"); err == nil || !strings.Contains(err.Error(), "coffer login") {
			t.Fatalf("clients list before login: %v", err)
		}
		// A wrong secret is refused and saves nothing.
		if _, _, err := n.cliRun(t, cfg, "wrong\n", "login", "--url", n.URL, "--ca-file", n.Init.CACert, "--client-id", n.Init.ClientID); err == nil {
			t.Fatal("login with a wrong secret succeeded")
		}
		if _, err := os.Stat(filepath.Join(cfg, "profiles", "default")); err == nil {
			t.Fatal("a refused login saved a profile")
		}
		out := n.mustCLI(t, cfg, n.Init.ClientSecret+"\n", nil, "login", "--url", n.URL, "--ca-file", n.Init.CACert, "--client-id", n.Init.ClientID)
		if !strings.Contains(out, "logged in") || strings.Contains(out, n.Init.ClientSecret) {
			t.Fatalf("login said %q", out)
		}
		for path, want := range map[string]os.FileMode{"profiles/default/secret": 0o600, "profiles/default": 0o700, ".": 0o700} {
			fi, err := os.Stat(filepath.Join(cfg, path))
			if err != nil || fi.Mode().Perm() != want {
				t.Fatalf("%s: %v mode %o, want %o", path, err, fi.Mode().Perm(), want)
			}
		}

		if err := n.Admin.CreateCollection(ctx, client.Collection{Name: "people", Fields: []client.Field{
			{Name: "name", Type: "string"}, {Name: "email", Type: "email", Searchable: true}}}); err != nil {
			t.Fatal(err)
		}
		var created struct{ ID string }
		n.mustCLI(t, cfg, `{"name":"Ada","email":"ada@example.com"}`, &created, "records", "create", "people", "--owner", "u1", "--subject", "s1", "-o", "json")
		var rec client.Record
		n.mustCLI(t, cfg, "", &rec, "records", "get", "people", created.ID, "-o", "json")
		if rec.Data["email"] != "ada@example.com" || rec.Owner != "u1" {
			t.Fatalf("record %+v", rec)
		}
		table := n.mustCLI(t, cfg, "", nil, "records", "search", "people", "--where", "email=ada@example.com", "-o", "table")
		if !strings.Contains(table, created.ID) || !strings.Contains(table, "Ada") || !strings.HasPrefix(table, "ID") {
			t.Fatalf("search table:\n%s", table)
		}

		var toks struct{ Tokens []string }
		n.mustCLI(t, cfg, "", &toks, "tokens", "tokenize", "--type", "card_number", "--mode", "format_preserving", "4111111111111111", "-o", "json")
		if len(toks.Tokens) != 1 || len(toks.Tokens[0]) != 16 || !strings.HasSuffix(toks.Tokens[0], "1111") {
			t.Fatalf("tokens %v", toks.Tokens)
		}
		var vals struct{ Values []string }
		n.mustCLI(t, cfg, toks.Tokens[0]+"\n", &vals, "tokens", "detokenize", "-o", "json")
		if len(vals.Values) != 1 || vals.Values[0] != "4111111111111111" {
			t.Fatalf("values %v", vals.Values)
		}
		// More values than one call carries: batches and a progress line.
		many := strings.Repeat("v\n", 1500)
		n.mustCLI(t, cfg, many, &toks, "tokens", "tokenize", "-o", "json")
		if len(toks.Tokens) != 1500 {
			t.Fatalf("%d tokens for 1500 values", len(toks.Tokens))
		}

		n.mustCLI(t, cfg, "", nil, "transit", "create", "k1", "-o", "json")
		var ct struct{ Ciphertext string }
		n.mustCLI(t, cfg, "", &ct, "transit", "encrypt", "k1", "hello transit", "-o", "json")
		if !strings.HasPrefix(ct.Ciphertext, "coffer:v1:") {
			t.Fatalf("ciphertext %q", ct.Ciphertext)
		}
		if pt := n.mustCLI(t, cfg, "", nil, "transit", "decrypt", "k1", ct.Ciphertext, "--raw"); pt != "hello transit" {
			t.Fatalf("plaintext %q", pt)
		}

		pol := filepath.Join(t.TempDir(), "policy.yaml")
		doc := "roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n  support:\n    - resources: [collections/people]\n      actions: [read]\n      fields: {email: masked, \"*\": plain}\n"
		if err := os.WriteFile(pol, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		n.mustCLI(t, cfg, "", nil, "policy", "apply", pol)
		if got := n.mustCLI(t, cfg, "", nil, "policy", "get"); got != doc {
			t.Fatalf("policy get:\n%s", got)
		}
		var d client.Decision
		n.mustCLI(t, cfg, "", &d, "policy", "check", "--action", "read", "--resource", "collections/people", "--role", "support", "--field", "email", "-o", "json")
		if !d.Allowed || d.Fields["email"] != "masked" {
			t.Fatalf("decision %+v", d)
		}
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("roles:\n  x:\n    - resources: [\"*\"]\n      actions: [fly]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errOut, err := n.cliRun(t, cfg, "", "policy", "apply", bad); client.StatusCode(err) != 422 || !strings.Contains(errOut, "fly") {
			t.Fatalf("bad policy: %v %q", err, errOut)
		}
		if _, _, err := n.cliRun(t, cfg, "", "policy", "get", "--data-dir", n.Dir); err == nil {
			t.Fatal("policy get --data-dir took the API path")
		}

		var nc client.NewClient
		n.mustCLI(t, cfg, "", &nc, "clients", "create", "svc", "--role", "support", "-o", "json")
		if nc.ClientSecret == "" {
			t.Fatal("no secret for a new client")
		}
		if list := n.mustCLI(t, cfg, "", nil, "clients", "list", "-o", "table"); !strings.Contains(list, nc.ClientID) || strings.Contains(list, nc.ClientSecret) {
			t.Fatalf("clients list:\n%s", list)
		}
		var u client.User
		n.mustCLI(t, cfg, userPassword+"\n", &u, "users", "create", "cli-user", "--role", "support", "-o", "json")
		if u.ID == "" || u.Username != "cli-user" {
			t.Fatalf("user %+v", u)
		}
		var ul struct{ Users []client.UserInfo }
		n.mustCLI(t, cfg, "", &ul, "users", "list", "-o", "json")
		if len(ul.Users) == 0 || ul.Users[len(ul.Users)-1].ID != u.ID {
			t.Fatalf("users list: %+v", ul)
		}
		if list := n.mustCLI(t, cfg, "", nil, "users", "list", "-o", "table"); !strings.Contains(list, "cli-user") || !strings.Contains(list, "MFA") {
			t.Fatalf("users list:\n%s", list)
		}
		var jobs struct{ Jobs []client.JobProgress }
		n.mustCLI(t, cfg, "", &jobs, "jobs", "status", "-o", "json")
		if len(jobs.Jobs) != 2 || jobs.Jobs[0].Name != "rewrap" || jobs.Jobs[1].Name != "reindex" {
			t.Fatalf("jobs status: %+v", jobs)
		}
		// Nothing asked for a rewrap: wait returns at once, with the
		// final line off a terminal (-q: nothing).
		if _, errOut, err := n.cliRun(t, cfg, "", "jobs", "wait", "rewrap"); err != nil || !strings.Contains(errOut, "rewrap: ") || !strings.Contains(errOut, "done in") {
			t.Fatalf("jobs wait: %v %q", err, errOut)
		}
		if _, errOut, err := n.cliRun(t, cfg, "", "jobs", "wait", "rewrap", "-q"); err != nil || errOut != "" {
			t.Fatalf("jobs wait -q: %v %q", err, errOut)
		}

		var er client.Erasure
		if _, _, err := n.cliRun(t, cfg, "", "subjects", "erase", "s1"); err == nil {
			t.Fatal("erase without --yes")
		}
		n.mustCLI(t, cfg, "", &er, "subjects", "erase", "s1", "--yes", "-o", "json")
		if !er.SubjectErased || er.RecordsDeleted != 1 {
			t.Fatalf("erasure %+v", er)
		}

		var evs struct{ Events []client.AuditEvent }
		out, errOut, err := n.cliRun(t, cfg, "", "audit", "events", "--all", "--limit", "5", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		mustJSON(t, []byte(out), &evs)
		if len(evs.Events) < 10 || !strings.Contains(errOut, "audit events read: 5") {
			t.Fatalf("%d events, progress %q", len(evs.Events), errOut)
		}

		// Errors: the server's problem, and a usage error.
		if _, _, err := n.cliRun(t, cfg, "", "records", "get", "people", "nope"); client.StatusCode(err) != 404 {
			t.Fatalf("missing record: %v", err)
		}
		var ue *cli.UsageError
		if _, _, err := n.cliRun(t, cfg, "", "clients", "list", "-o", "xml"); !errors.As(err, &ue) {
			t.Fatalf("-o xml: %v", err)
		}
		// Shell completion.
		if out, _, err := n.cliRun(t, cfg, "", "completion", "bash"); err != nil || !strings.Contains(out, "bash completion") {
			t.Fatalf("completion: %v %.80q", err, out)
		}
		if out, _, err := n.cliRun(t, cfg, "", "__complete", "records", "get", ""); err != nil || !strings.Contains(out, "people") {
			t.Fatalf("collection completion: %v %q", err, out)
		}

		// A secret file others may read is refused.
		if err := os.Chmod(filepath.Join(cfg, "profiles", "default", "secret"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := n.cliRun(t, cfg, "", "clients", "list"); err == nil || !strings.Contains(err.Error(), "readable by others") {
			t.Fatalf("world-readable secret: %v", err)
		}
	})
}
