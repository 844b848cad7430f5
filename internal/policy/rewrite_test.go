package policy

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
)

const beforeLinkable = `# billing makes card tokens
roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  billing:
    - resources: ["tokens/card_number"] # the only type it handles
      actions: [tokenize, detokenize]
  everything:
    - resources: ["*"]
      actions: [read, tokenize]
  clerk:
    - resources: ["collections/customers"]
      actions: [read]
  breakglass:
    require_mfa: true
    rules:
      - resources: ["tokens/*", "keys/payments"]
        actions: &acts [tokenize]
      - resources: ["keys/other"]
        actions: *acts
`

// A document stored before tokenize_linkable existed is rewritten so that
// every role that could make linkable tokens still can, and nothing else
// changes; the summary names each rule and asks for a review.
func TestRewriteTokenizeLinkable(t *testing.T) {
	out, changes, err := ApplyRewrites([]byte(beforeLinkable), FormatYAML, 9, Rewrites())
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, c := range changes {
		paths = append(paths, c.Path)
		if c.Rewrite != "tokenize_linkable" || !strings.Contains(c.Message, "Review it") {
			t.Errorf("change %s: want the tokenize_linkable rewrite asking for a review", c)
		}
	}
	want := []string{"roles.billing[0]", "roles.everything[0]", "roles.breakglass.rules[0]"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Fatalf("changed rules %v, want %v", paths, want)
	}
	if !strings.Contains(changes[0].Message, "tokens/card_number") {
		t.Errorf("the summary does not name the resource: %s", changes[0])
	}
	for _, keep := range []string{"# billing makes card tokens", "# the only type it handles"} {
		if !strings.Contains(string(out), keep) {
			t.Errorf("the comment %q was lost:\n%s", keep, out)
		}
	}
	p, err := Load(out, FormatYAML)
	if err != nil {
		t.Fatalf("rewritten document does not load: %v\n%s", err, out)
	}
	who := func(role string) *coffer.Principal {
		return &coffer.Principal{ID: "p", Roles: []string{role}, MFA: true}
	}
	for _, c := range []struct {
		role, action, res string
		allowed           bool
	}{
		{"billing", ActionTokenizeLinkable, "tokens/card_number", true},
		{"billing", ActionTokenizeLinkable, "tokens/ssn", false},
		{"billing", ActionTokenize, "tokens/card_number", true},
		{"everything", ActionTokenizeLinkable, "tokens/ssn", true},
		{"clerk", ActionTokenizeLinkable, "tokens/ssn", false},
		{"breakglass", ActionTokenizeLinkable, "tokens/email", true},
		// The alias is not changed for the rule that shares it and has
		// no token resource.
		{"breakglass", ActionTokenizeLinkable, "keys/other", false},
		{"breakglass", ActionTokenize, "keys/other", true},
	} {
		d := p.Decide(Input{Principal: who(c.role), Action: c.action, Resource: c.res})
		if d.Allowed != c.allowed {
			t.Errorf("%s %s %s: allowed %v, want %v (%s)", c.role, c.action, c.res, d.Allowed, c.allowed, d.Reason)
		}
	}

	// Applied again (or to a document stored at schema 10 or later), it
	// changes nothing.
	again, ch, err := ApplyRewrites(out, FormatYAML, 9, Rewrites())
	if err != nil || len(ch) != 0 || string(again) != string(out) {
		t.Errorf("second application: %v changes %v", err, ch)
	}
	same, ch, err := ApplyRewrites([]byte(beforeLinkable), FormatYAML, 10, Rewrites())
	if err != nil || len(ch) != 0 || string(same) != beforeLinkable {
		t.Errorf("a document stored at schema 10: %v changes %v", err, ch)
	}
}

// A JSON document comes back as JSON, rewritten the same way.
func TestRewriteJSONDocument(t *testing.T) {
	src := `{"roles":{"svc":[{"resources":["tokens/ssn"],"actions":["tokenize"]}]}}`
	out, changes, err := ApplyRewrites([]byte(src), FormatJSON, 0, Rewrites())
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 {
		t.Fatalf("changes %v, want one", changes)
	}
	p, err := Load(out, FormatJSON)
	if err != nil {
		t.Fatalf("rewritten JSON does not load: %v\n%s", err, out)
	}
	d := p.Decide(Input{Principal: &coffer.Principal{ID: "s", Roles: []string{"svc"}}, Action: ActionTokenizeLinkable, Resource: "tokens/ssn"})
	if !d.Allowed {
		t.Fatalf("svc may not make linkable ssn tokens after the rewrite:\n%s", out)
	}
}

// A document that does not load is refused, not rewritten.
func TestRewriteRefusesBrokenDocument(t *testing.T) {
	if _, _, err := ApplyRewrites([]byte("roles: [oops"), FormatYAML, 0, Rewrites()); err == nil {
		t.Fatal("a broken document was rewritten")
	}
}

// Since tokenize_linkable exists, tokenize alone no longer grants it, and
// "*" grants both.
func TestTokenizeDoesNotGrantLinkable(t *testing.T) {
	p, err := Load([]byte(`roles:
  r:
    - resources: ["tokens/card_number"]
      actions: [tokenize]
  all:
    - resources: ["tokens/card_number"]
      actions: ["*"]
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	in := func(role, action string) Input {
		return Input{Principal: &coffer.Principal{ID: "x", Roles: []string{role}}, Action: action, Resource: "tokens/card_number"}
	}
	if p.Decide(in("r", ActionTokenizeLinkable)).Allowed {
		t.Error("tokenize grants tokenize_linkable")
	}
	if !p.Decide(in("all", ActionTokenizeLinkable)).Allowed || !p.Decide(in("all", ActionTokenize)).Allowed {
		t.Error(`"*" does not grant both tokenize actions`)
	}
}
