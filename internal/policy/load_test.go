package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// problem is an expected problem: its exact path and a part of its message.
type problem struct{ path, msg string }

func TestLoadRejectsInvalidDocuments(t *testing.T) {
	rule := func(extra string) string {
		return "roles:\n  x:\n    - resources: [\"collections/a\"]\n      actions: [read]\n" + extra
	}
	tests := []struct {
		name   string
		format string
		doc    string
		want   []problem
	}{
		{"fail/unknown action", "yaml", "roles:\n  support:\n    - resources: [audit]\n      actions: [read, raed]\n",
			[]problem{{"roles.support[0].actions[1]", `unknown action "raed"`}}},
		{"fail/action not a string", "yaml", "roles:\n  x:\n    - resources: [audit]\n      actions: [1]\n",
			[]problem{{"roles.x[0].actions[0]", "must be a string, not a number"}}},
		{"fail/empty actions", "yaml", "roles:\n  x:\n    - resources: [audit]\n      actions: []\n",
			[]problem{{"roles.x[0].actions", "must not be empty"}}},
		{"fail/missing actions", "yaml", "roles:\n  x:\n    - resources: [audit]\n",
			[]problem{{"roles.x[0].actions", "is required"}}},
		{"fail/actions not a list", "yaml", "roles:\n  x:\n    - resources: [audit]\n      actions: read\n",
			[]problem{{"roles.x[0].actions", "must be a list of strings, not a string"}}},
		{"fail/unknown resource kind", "yaml", "roles:\n  x:\n    - resources: [audit, collection/a]\n      actions: [read]\n",
			[]problem{{"roles.x[0].resources[1]", `unknown resource "collection/a"`}}},
		{"fail/resource name with capitals", "yaml", "roles:\n  x:\n    - resources: [collections/Customers]\n      actions: [read]\n",
			[]problem{{"roles.x[0].resources[0]", `bad resource "collections/Customers"`}}},
		{"fail/resource glob in the middle", "yaml", "roles:\n  x:\n    - resources: [\"collections/a*b\"]\n      actions: [read]\n",
			[]problem{{"roles.x[0].resources[0]", "bad resource"}}},
		{"fail/resource without a name", "yaml", "roles:\n  x:\n    - resources: [\"tokens/\"]\n      actions: [read]\n",
			[]problem{{"roles.x[0].resources[0]", "bad resource"}}},
		{"fail/resource name too long", "yaml", "roles:\n  x:\n    - resources: [keys/" + strings.Repeat("k", 65) + "]\n      actions: [read]\n",
			[]problem{{"roles.x[0].resources[0]", "bad resource"}}},
		{"fail/top-level glob other than star", "yaml", "roles:\n  x:\n    - resources: [\"aud*\"]\n      actions: [read]\n",
			[]problem{{"roles.x[0].resources[0]", "unknown resource"}}},
		{"fail/missing resources", "yaml", "roles:\n  x:\n    - actions: [read]\n",
			[]problem{{"roles.x[0].resources", "is required"}}},
		{"fail/unknown field view", "yaml", rule("      fields: {email: hidden}\n"),
			[]problem{{"roles.x[0].fields.email", `unknown view "hidden"`}}},
		{"fail/field view not a string", "yaml", rule("      fields: {email: true}\n"),
			[]problem{{"roles.x[0].fields.email", "must be a string, not a boolean"}}},
		{"fail/bad field name", "yaml", rule("      fields: {\"e mail\": plain}\n"),
			[]problem{{"roles.x[0].fields.e mail", "field name"}}},
		{"fail/empty fields", "yaml", rule("      fields: {}\n"),
			[]problem{{"roles.x[0].fields", "at least one field"}}},
		{"fail/fields on an action without views", "yaml", "roles:\n  x:\n    - resources: [audit]\n      actions: [update]\n      fields: {a: plain}\n",
			[]problem{{"roles.x[0].fields", "apply only to read, search and detokenize"}}},
		{"fail/empty role", "yaml", "roles:\n  x: []\n",
			[]problem{{"roles.x", "role has no rules"}}},
		{"fail/null role", "yaml", "roles:\n  x:\n",
			[]problem{{"roles.x", "must be a list of rules"}}},
		{"fail/role object without rules", "yaml", "roles:\n  x: {require_mfa: true}\n",
			[]problem{{"roles.x.rules", "is required"}}},
		{"fail/role object with empty rules", "yaml", "roles:\n  x: {require_mfa: true, rules: []}\n",
			[]problem{{"roles.x.rules", "role has no rules"}}},
		{"fail/require_mfa not a bool", "yaml", "roles:\n  x:\n    require_mfa: \"yes\"\n    rules: [{resources: [audit], actions: [read]}]\n",
			[]problem{{"roles.x.require_mfa", "must be true or false"}}},
		{"fail/unknown key in role object", "yaml", "roles:\n  x:\n    mfa: true\n    rules: [{resources: [audit], actions: [read]}]\n",
			[]problem{{"roles.x.mfa", "unknown key"}}},
		{"fail/problem path inside role object", "yaml", "roles:\n  x:\n    require_mfa: true\n    rules: [{resources: [audit], actions: [raed]}]\n",
			[]problem{{"roles.x.rules[0].actions[0]", "unknown action"}}},
		{"fail/bad role name", "yaml", "roles:\n  Bad Role:\n    - resources: [audit]\n      actions: [read]\n",
			[]problem{{"roles.Bad Role", "role name"}}},
		{"fail/no roles", "yaml", "roles: {}\n",
			[]problem{{"roles", "at least one role"}}},
		{"fail/missing roles", "yaml", "{}\n",
			[]problem{{"roles", "is required"}}},
		{"fail/unknown top-level key", "yaml", "rolez: {}\n",
			[]problem{{"rolez", "unknown key"}, {"roles", "is required"}}},
		{"fail/unknown key in rule", "yaml", rule("      resource: [audit]\n"),
			[]problem{{"roles.x[0].resource", "unknown key"}}},
		{"fail/rule not a mapping", "yaml", "roles:\n  x: [read]\n",
			[]problem{{"roles.x[0]", "must be a mapping, not a string"}}},
		{"fail/duplicate key in YAML", "yaml", "roles:\n  x: [{resources: [audit], actions: [read]}]\n  x: [{resources: [audit], actions: [read]}]\n",
			[]problem{{"roles.x", "duplicate key"}}},
		{"fail/duplicate key in JSON", "json", `{"roles":{"x":[{"resources":["audit"],"actions":["read"],"actions":["read"]}]}}`,
			[]problem{{"roles.x[0].actions", "duplicate key"}}},
		{"fail/merge key", "yaml", "base: &b {resources: [audit]}\nroles:\n  x:\n    - <<: *b\n      actions: [read]\n",
			[]problem{{"", "merge keys"}}},
		{"fail/CEL syntax error with line and column", "yaml", rule("      when: resource.owner ==\n"),
			[]problem{{"roles.x[0].when", "1:18: Syntax error"}}},
		{"fail/CEL error on the second line", "yaml", rule("      when: |\n        principal.id == \"a\" &&\n          resource.ownr == \"b\"\n"),
			[]problem{{"roles.x[0].when", "2:11: undefined field 'ownr'"}}},
		{"fail/CEL unknown principal field", "yaml", rule("      when: principal.idd == \"a\"\n"),
			[]problem{{"roles.x[0].when", "1:10: undefined field 'idd'"}}},
		{"fail/CEL unknown request field", "yaml", rule("      when: request.addr == \"a\"\n"),
			[]problem{{"roles.x[0].when", "undefined field 'addr'"}}},
		{"fail/CEL unknown variable", "yaml", rule("      when: user.id == \"a\"\n"),
			[]problem{{"roles.x[0].when", "undeclared reference to 'user'"}}},
		{"fail/CEL type error", "yaml", rule("      when: principal.mfa == \"yes\"\n"),
			[]problem{{"roles.x[0].when", "no matching overload"}}},
		{"fail/CEL result not a bool", "yaml", rule("      when: principal.id\n"),
			[]problem{{"roles.x[0].when", "must be a bool, not string"}}},
		{"fail/CEL dyn result is not a bool", "yaml", rule("      when: dyn(principal.mfa)\n"),
			[]problem{{"roles.x[0].when", "must be a bool"}}},
		{"fail/empty when", "yaml", rule("      when: \"  \"\n"),
			[]problem{{"roles.x[0].when", "must not be empty"}}},
		{"fail/when not a string", "yaml", rule("      when: true\n"),
			[]problem{{"roles.x[0].when", "must be a string, not a boolean"}}},
		{"fail/condition too long", "yaml", rule("      when: \"" + strings.Repeat("true && ", 600) + "true\"\n"),
			[]problem{{"roles.x[0].when", "at most 4096"}}},
		{"fail/not YAML", "yaml", "roles: [\n", []problem{{"", "not valid YAML"}}},
		{"fail/not JSON", "json", `{"roles":`, []problem{{"", "cut short"}}},
		{"fail/JSON trailing data", "json", `{"roles":{}} {}`, []problem{{"", "data after the JSON value"}}},
		{"fail/empty YAML", "yaml", "", []problem{{"", "document is empty"}}},
		{"fail/two YAML documents", "yaml", "roles: {}\n---\nroles: {}\n", []problem{{"", "more than one YAML document"}}},
		{"fail/document is a list", "yaml", "- roles\n", []problem{{"", "must be a mapping, not a list"}}},
		{"fail/unknown format", "toml", "roles = {}", []problem{{"", "format must be json or yaml"}}},
		{"fail/too deep", "json", strings.Repeat("[", 100) + strings.Repeat("]", 100), []problem{{"", "too deeply nested"}}},
		{"fail/every problem at once", "yaml", `roles:
  support:
    - resources: ["collections/customers", "nope"]
      actions: [read, raed]
      when: principal.idd == "a"
      fields: {email: hidden}
  empty: []
  customer:
    - resources: ["collections/customers"]
      actions: [read]
      when: resource.ownr == principal.id
`, []problem{
			{"roles.support[0].resources[1]", "unknown resource"},
			{"roles.support[0].actions[1]", "unknown action"},
			{"roles.support[0].fields.email", "unknown view"},
			{"roles.empty", "role has no rules"},
			{"roles.support[0].when", "undefined field 'idd'"},
			{"roles.customer[0].when", "undefined field 'ownr'"},
		}},
		{"fail/every CEL problem at once", "yaml", `roles:
  support:
    - resources: ["collections/customers"]
      actions: [read]
      when: principal.idd == "a"
  customer:
    - resources: ["collections/customers"]
      actions: [read]
      when: resource.ownr == principal.id
    - resources: ["collections/customers"]
      actions: [read]
      when: principal.id
`, []problem{
			{"roles.support[0].when", "undefined field 'idd'"},
			{"roles.customer[0].when", "undefined field 'ownr'"},
			{"roles.customer[1].when", "must be a bool"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Load([]byte(tt.doc), tt.format)
			if p != nil || err == nil {
				t.Fatalf("Load succeeded, want problems %v", tt.want)
			}
			var pe *ProblemsError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ProblemsError", err, err)
			}
			if len(pe.Problems) != len(tt.want) {
				t.Errorf("got %d problems, want %d: %v", len(pe.Problems), len(tt.want), pe.Problems)
			}
			for _, w := range tt.want {
				found := false
				for _, g := range pe.Problems {
					if g.Path == w.path && strings.Contains(g.Message, w.msg) {
						found = true
					}
				}
				if !found {
					t.Errorf("no problem at %q containing %q; got %v", w.path, w.msg, pe.Problems)
				}
			}
		})
	}
}

func TestLoadAcceptsEveryResourceAndAction(t *testing.T) {
	doc := `roles:
  ops:
    - resources: ["*", "collections/*", "collections/cust*", "collections/a-b_9", "tokens/*", "tokens/card_number",
                  "keys/*", "keys/payments", audit, policy, clients, users, security, subjects, inspect]
      actions: [create, read, update, delete, search, tokenize, detokenize, encrypt, decrypt, admin]
    - resources: [audit]
      actions: ["*"]
      when: request.time > timestamp("2020-01-01T00:00:00Z") && request.ip != "" && principal.kind == "user" && "x" in principal.roles && principal.mfa && resource.id == "" && resource.collection == ""
`
	if _, err := Load([]byte(doc), FormatYAML); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRejectsOversizedDocuments(t *testing.T) {
	_, err := Load(make([]byte, MaxDocumentBytes+1), FormatJSON)
	var pe *ProblemsError
	if !errors.As(err, &pe) || !strings.Contains(pe.Problems[0].Message, "larger than") {
		t.Fatalf("got %v, want a size problem", err)
	}
}

func TestLoadStopsAfterManyProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("roles:\n  x:\n    - resources: [audit]\n      actions: [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("bad")
	}
	b.WriteString("]\n")
	_, err := Load([]byte(b.String()), FormatYAML)
	var pe *ProblemsError
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	if len(pe.Problems) != maxProblems+1 || !strings.Contains(pe.Problems[maxProblems].Message, "too many problems") {
		t.Errorf("got %d problems, last %v", len(pe.Problems), pe.Problems[len(pe.Problems)-1])
	}
}

func TestLoadFollowsYAMLAnchors(t *testing.T) {
	doc := `roles:
  a:
    - resources: &res ["collections/customers"]
      actions: [read]
      fields: &f {email: masked, "*": plain}
  b:
    - resources: *res
      actions: [search]
      fields: *f
`
	p, err := Load([]byte(doc), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide(Input{Principal: user("u", "b"), Action: "search", Resource: "collections/customers"})
	if !d.Allowed || d.View("email") != Masked || d.View("name") != Plain {
		t.Errorf("decision through anchors: %+v", d)
	}
}

func FuzzLoad(f *testing.F) {
	for _, name := range []string{"example.yaml", "example.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, strings.HasSuffix(name, ".json"))
	}
	f.Add([]byte(defaultSource), false)
	f.Add([]byte(`{"roles":{"x":{"require_mfa":true,"rules":[{"resources":["keys/*"],"actions":["*"],"when":"resource.owner == principal.id"}]}}}`), true)
	f.Add([]byte("roles:\n  x:\n    - resources: [audit]\n      actions: [read]\n      when: principal.roles.exists(r, r.startsWith('a'))\n"), false)
	f.Add([]byte("a: &a [*a]"), false)
	f.Add([]byte(`{"roles":{"x":[{"resources":["audit"],"actions":["raed"],"fields":{"*":"masked"}}]}}`), true)
	inputs := []Input{
		{Principal: user("u", "x", "admin", "support", "customer"), Action: "read", Resource: "collections/customers", Owner: "u"},
		{Principal: user("u", "x"), Action: "encrypt", Resource: "keys/k"},
		{Principal: user("u", "x"), Action: "read", Resource: "audit"},
	}
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		format := FormatYAML
		if isJSON {
			format = FormatJSON
		}
		p, err := Load(data, format)
		if err != nil {
			var pe *ProblemsError
			if !errors.As(err, &pe) || len(pe.Problems) == 0 || p != nil {
				t.Fatalf("Load error %v (%T) with policy %v", err, err, p)
			}
			for _, pr := range pe.Problems {
				if pr.Message == internalProblem {
					t.Fatalf("Load panicked inside on %q", data)
				}
			}
			return
		}
		// A loaded policy has a stable normalised form that loads again.
		j, err := p.JSON()
		if err != nil {
			t.Fatal(err)
		}
		q, err := Load(j, FormatJSON)
		if err != nil {
			t.Fatalf("normalised form %s does not load: %v", j, err)
		}
		j2, _ := q.JSON()
		if string(j) != string(j2) {
			t.Fatalf("normalised form not stable:\n%s\n%s", j, j2)
		}
		for _, in := range inputs {
			d1, d2 := p.Decide(in), q.Decide(in)
			if d1.Allowed != d2.Allowed || d1.Rule != d2.Rule || d1.Reason != d2.Reason || d1.View("email") != d2.View("email") {
				t.Fatalf("decisions differ after normalising: %+v vs %+v", d1, d2)
			}
			_ = p.NeedsResource(in.Principal, in.Action, in.Resource)
		}
	})
}

func BenchmarkLoad(b *testing.B) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(data, FormatYAML); err != nil {
			b.Fatal(err)
		}
	}
}
