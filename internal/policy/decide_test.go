package policy

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/coffer"
)

func TestDenialReasonIsBoundedAndValidUTF8(t *testing.T) {
	p := Default()
	long := strings.Repeat("é", 200)
	d := p.Decide(Input{Principal: user("u", long), Action: "read", Resource: "collections/" + long})
	if d.Allowed || !utf8.ValidString(d.Reason) || len(d.Reason) > 3*maxReasonName+64 {
		t.Errorf("reason of %d bytes, valid UTF-8 %v: %q", len(d.Reason), utf8.ValidString(d.Reason), d.Reason)
	}
	d = p.Decide(Input{Principal: user("u", "admin"), Action: long, Resource: "audit"})
	if d.Allowed || !utf8.ValidString(d.Reason) || len(d.Reason) > 128 {
		t.Errorf("unknown action reason: %q", d.Reason)
	}
}

// TestResourceSubject: conditions see the record's data subject as
// resource.subject, and a rule that reads it needs the stored record
// (NeedsResource), like one that reads resource.owner.
func TestResourceSubject(t *testing.T) {
	p, err := Load([]byte(`roles:
  intake:
    - resources: ["collections/patients"]
      actions: [create, update]
      when: resource.subject == "" || resource.subject == principal.attributes["subject"]
  eraser:
    - resources: ["subjects"]
      actions: [delete]
      when: resource.subject.startsWith("test-")
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	in := &coffer.Principal{ID: "c1", Kind: coffer.KindClient, Roles: []string{"intake", "eraser"}, Attributes: map[string]string{"subject": "s1"}}
	for _, tc := range []struct {
		name    string
		in      Input
		allowed bool
	}{
		{"allow/no subject", Input{Action: "create", Resource: "collections/patients"}, true},
		{"allow/its own subject", Input{Action: "create", Resource: "collections/patients", Subject: "s1"}, true},
		{"deny/another subject's key", Input{Action: "create", Resource: "collections/patients", Subject: "s2"}, false},
		{"deny/update of another subject's record", Input{Action: "update", Resource: "collections/patients", Subject: "s2"}, false},
		{"allow/erase a test subject", Input{Action: "delete", Resource: "subjects", Subject: "test-1"}, true},
		{"deny/erase another subject", Input{Action: "delete", Resource: "subjects", Subject: "s1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Principal = in
			if d := p.Decide(tc.in); d.Allowed != tc.allowed {
				t.Errorf("allowed %v, want %v (%s)", d.Allowed, tc.allowed, d.Reason)
			}
		})
	}
	if !p.NeedsResource(in, "update", "collections/patients") {
		t.Error("a condition on resource.subject does not need the stored record")
	}
}

// TestBestView: the most permissive view any rule that may grant the
// action gives a field, whatever its condition.
func TestBestView(t *testing.T) {
	p, err := Load([]byte(`roles:
  mixed:
    - resources: ["collections/c"]
      actions: [search]
      fields: {"*": deny, name: masked}
    - resources: ["collections/c"]
      actions: [read, search]
      when: resource.owner == principal.id
      fields: {age: plain}
  all:
    - resources: ["collections/d"]
      actions: [search]
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	u := user("u", "mixed", "all")
	for _, tc := range []struct {
		action, resource, field string
		want                    View
	}{
		{"search", "collections/c", "age", Plain},
		{"search", "collections/c", "name", Masked},
		{"search", "collections/c", "ssn", Deny},
		{"create", "collections/c", "age", Deny},
		{"search", "collections/d", "anything", Plain},
		{"search", "collections/e", "age", Deny},
	} {
		if got := p.BestView(u, tc.action, tc.resource, tc.field); got != tc.want {
			t.Errorf("BestView(%s %s %s) = %v, want %v", tc.action, tc.resource, tc.field, got, tc.want)
		}
	}
	if got := p.BestView(nil, "search", "collections/d", "x"); got != Deny {
		t.Errorf("BestView without a principal = %v", got)
	}
}

// TestRolesGranting: the roles whose rules may grant an action on a
// resource, conditions and MFA aside.
func TestRolesGranting(t *testing.T) {
	p, err := Load([]byte(`roles:
  admin:
    require_mfa: true
    rules: [{resources: ["*"], actions: ["*"]}]
  ops:
    - resources: ["policy"]
      actions: [update]
      when: request.ip == "192.0.2.1"
  reader:
    - resources: ["policy"]
      actions: [read]
`), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.RolesGranting("update", "policy"); !slices.Equal(got, []string{"admin", "ops"}) {
		t.Fatalf("update policy: %v", got)
	}
	if got := p.RolesGranting("bogus", "policy"); got != nil {
		t.Fatalf("unknown action: %v", got)
	}
}
