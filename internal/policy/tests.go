package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cofferhq/coffer/internal/coffer"
)

// TestResult is the outcome of one policy test.
type TestResult struct {
	// Name is the test's name ("tests[3]" when it has none).
	Name string
	// Pass reports whether the decision was as expected.
	Pass bool
	// Got is the decision the policy made.
	Got Decision
	// Message says what differed; empty when the test passed.
	Message string
}

// testFile is the policy test table read by RunTests.
type testFile struct {
	Tests []testCase `yaml:"tests"`
}

type testCase struct {
	Name      string `yaml:"name"`
	Principal struct {
		ID         string            `yaml:"id"`
		Kind       string            `yaml:"kind"`
		Roles      []string          `yaml:"roles"`
		Attributes map[string]string `yaml:"attributes"`
		MFA        bool              `yaml:"mfa"`
	} `yaml:"principal"`
	Action     string            `yaml:"action"`
	Resource   string            `yaml:"resource"`
	Owner      string            `yaml:"owner"`
	Subject    string            `yaml:"subject"`
	Collection string            `yaml:"collection"`
	ID         string            `yaml:"id"`
	IP         string            `yaml:"ip"`
	Time       string            `yaml:"time"`
	Expect     string            `yaml:"expect"`
	Fields     map[string]string `yaml:"fields"`
}

// RunTests runs a policy test table (for `coffer policy test FILE`) against
// p and returns one result per test, in order. The table is YAML (or JSON):
//
//	tests:
//	  - name: support sees email masked
//	    principal: {id: u1, kind: user, roles: [support], attributes: {team: eu}, mfa: false}
//	    action: read
//	    resource: collections/customers
//	    owner: u1                      # also: subject, collection, id, ip, time (RFC 3339)
//	    expect: allow                  # or deny
//	    fields: {email: masked, ssn: deny}
//
// request.time is the test's time, or the zero time when it has none, so
// that results do not depend on the clock. The error is for a table that
// cannot be read (unknown keys included); a failing test is a result.
func RunTests(p *Policy, tests []byte) ([]TestResult, error) {
	if p == nil {
		return nil, errors.New("policy: RunTests: no policy")
	}
	dec := yaml.NewDecoder(bytes.NewReader(tests))
	dec.KnownFields(true)
	var f testFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("policy: tests: file is empty")
		}
		return nil, fmt.Errorf("policy: tests: %w", err)
	}
	if len(f.Tests) == 0 {
		return nil, errors.New("policy: tests: no tests")
	}
	out := make([]TestResult, 0, len(f.Tests))
	for i, tc := range f.Tests {
		name := tc.Name
		if name == "" {
			name = fmt.Sprintf("tests[%d]", i)
		}
		in, err := tc.input()
		if err != nil {
			return nil, fmt.Errorf("policy: tests: %s: %w", name, err)
		}
		want := map[string]View{}
		for field, s := range tc.Fields {
			v, ok := ParseView(s)
			if !ok {
				return nil, fmt.Errorf("policy: tests: %s: fields.%s: want plain, masked or deny", name, field)
			}
			want[field] = v
		}
		var wantAllow bool
		switch tc.Expect {
		case "allow":
			wantAllow = true
		case "deny":
		default:
			return nil, fmt.Errorf("policy: tests: %s: expect must be allow or deny", name)
		}
		d := p.Decide(in)
		res := TestResult{Name: name, Got: d}
		var diffs []string
		if d.Allowed != wantAllow {
			got := "deny (" + d.Reason + ")"
			if d.Allowed {
				got = "allow (" + d.Rule + ")"
			}
			diffs = append(diffs, fmt.Sprintf("expected %s, got %s", tc.Expect, got))
		}
		fields := make([]string, 0, len(want))
		for field := range want {
			fields = append(fields, field)
		}
		sort.Strings(fields)
		for _, field := range fields {
			if got := d.View(field); got != want[field] {
				diffs = append(diffs, fmt.Sprintf("field %s: expected %s, got %s", field, want[field], got))
			}
		}
		res.Pass = len(diffs) == 0
		res.Message = strings.Join(diffs, "; ")
		out = append(out, res)
	}
	return out, nil
}

func (tc *testCase) input() (Input, error) {
	in := Input{
		Principal: &coffer.Principal{ID: tc.Principal.ID, Kind: tc.Principal.Kind, Roles: tc.Principal.Roles,
			Attributes: tc.Principal.Attributes, MFA: tc.Principal.MFA},
		Action: tc.Action, Resource: tc.Resource, Owner: tc.Owner, Subject: tc.Subject, Collection: tc.Collection, ID: tc.ID, IP: tc.IP,
	}
	if tc.Action == "" || tc.Resource == "" {
		return in, errors.New("action and resource are required")
	}
	if tc.Time != "" {
		t, err := time.Parse(time.RFC3339, tc.Time)
		if err != nil {
			return in, errors.New("time must be RFC 3339")
		}
		in.Time = t
	}
	return in, nil
}
