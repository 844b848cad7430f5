package policy

import (
	"strings"
	"testing"
)

func TestRunTestsReportsEachCase(t *testing.T) {
	p := loadFile(t, "example.yaml", FormatYAML)
	table := `tests:
  - name: support sees email masked
    principal: {id: s1, kind: user, roles: [support]}
    action: read
    resource: collections/customers
    expect: allow
    fields: {email: masked, ssn: deny, name: plain}
  - name: customer reads own record
    principal: {id: c1, kind: user, roles: [customer]}
    action: read
    resource: collections/customers
    owner: c1
    expect: allow
  - name: wrong expectation on the decision
    principal: {id: c1, kind: user, roles: [customer]}
    action: read
    resource: collections/customers
    owner: c2
    expect: allow
  - name: wrong expectation on a field
    principal: {id: s1, roles: [support]}
    action: read
    resource: collections/customers
    expect: allow
    fields: {ssn: plain}
  - principal: {id: a, roles: [analyst], attributes: {team: eu}}
    action: search
    resource: collections/customers
    ip: 10.0.0.1
    expect: allow
    fields: {email: plain}
  - name: office hours use the test's time
    principal: {id: o, roles: [office-hours]}
    action: encrypt
    resource: keys/payments
    time: "2025-03-04T20:00:00Z"
    expect: deny
  - name: breakglass with mfa
    principal: {id: b, roles: [breakglass], mfa: true}
    action: encrypt
    resource: keys/payments
    expect: allow
`
	got, err := RunTests(p, []byte(table))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		pass bool
		msg  string
	}{
		{"support sees email masked", true, ""},
		{"customer reads own record", true, ""},
		{"wrong expectation on the decision", false, "expected allow, got deny (condition of customer[0] is false)"},
		{"wrong expectation on a field", false, "field ssn: expected plain, got deny"},
		{"tests[4]", true, ""},
		{"office hours use the test's time", true, ""},
		{"breakglass with mfa", true, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Name != w.name || got[i].Pass != w.pass || got[i].Message != w.msg {
			t.Errorf("result %d = {%q %v %q}, want {%q %v %q}", i, got[i].Name, got[i].Pass, got[i].Message, w.name, w.pass, w.msg)
		}
	}
	if !got[1].Got.Allowed || got[1].Got.Rule != "customer[0]" {
		t.Errorf("Got = %+v, want the decision", got[1].Got)
	}
}

func TestRunTestsRejectsBadTables(t *testing.T) {
	p := Default()
	tests := []struct{ name, table, want string }{
		{"fail/empty file", "", "empty"},
		{"fail/no tests", "tests: []\n", "no tests"},
		{"fail/unknown key", "tests:\n  - action: read\n    resource: audit\n    expect: allow\n    expected: allow\n", "expected"},
		{"fail/bad expect", "tests:\n  - action: read\n    resource: audit\n    expect: maybe\n", "expect must be allow or deny"},
		{"fail/bad field view", "tests:\n  - action: read\n    resource: audit\n    expect: allow\n    fields: {a: hidden}\n", "fields.a"},
		{"fail/missing action", "tests:\n  - resource: audit\n    expect: allow\n", "action and resource are required"},
		{"fail/bad time", "tests:\n  - action: read\n    resource: audit\n    expect: allow\n    time: yesterday\n", "RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RunTests(p, []byte(tt.table))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := RunTests(nil, []byte("tests: []")); err == nil {
		t.Error("RunTests(nil) succeeded")
	}
}

// TestRunTestsSubject: a test case names the record's data subject, seen
// by conditions as resource.subject.
func TestRunTestsSubject(t *testing.T) {
	p, err := Load([]byte(`roles:
  intake:
    - resources: ["collections/patients"]
      actions: [create]
      when: resource.subject == principal.attributes["subject"]
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	got, err := RunTests(p, []byte(`tests:
  - name: its own subject
    principal: {id: c, roles: [intake], attributes: {subject: s1}}
    action: create
    resource: collections/patients
    subject: s1
    expect: allow
  - name: another subject
    principal: {id: c, roles: [intake], attributes: {subject: s1}}
    action: create
    resource: collections/patients
    subject: s2
    expect: deny
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d results, want 2", len(got))
	}
	for _, r := range got {
		if !r.Pass {
			t.Errorf("%s: %s", r.Name, r.Message)
		}
	}
}
