package policy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

func loadFile(tb testing.TB, name, format string) *Policy {
	tb.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := Load(data, format)
	if err != nil {
		tb.Fatalf("Load(%s): %v", name, err)
	}
	return p
}

func user(id string, roles ...string) *coffer.Principal {
	return &coffer.Principal{ID: id, Kind: coffer.KindUser, Roles: roles}
}

var (
	morning = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	evening = time.Date(2025, 3, 4, 20, 0, 0, 0, time.UTC)
)

func TestDecideExamplePolicy(t *testing.T) {
	for _, format := range []string{FormatYAML, FormatJSON} {
		p := loadFile(t, "example."+format, format)
		eu := &coffer.Principal{ID: "a1", Kind: coffer.KindUser, Roles: []string{"analyst"}, Attributes: map[string]string{"team": "eu"}}
		us := &coffer.Principal{ID: "a2", Kind: coffer.KindUser, Roles: []string{"analyst"}, Attributes: map[string]string{"team": "us"}}
		mfa := &coffer.Principal{ID: "b1", Kind: coffer.KindUser, Roles: []string{"breakglass"}, MFA: true}
		many := user("c1", "customer")
		for i := range 100 {
			many.Roles = append(many.Roles, fmt.Sprintf("r%d", i))
		}
		tests := []struct {
			name   string
			in     Input
			allow  bool
			rule   string // when allowed
			reason string // when denied: a substring
			views  map[string]View
		}{
			{name: "allow/support reads customers with email masked and ssn denied",
				in:    Input{Principal: user("s1", "support"), Action: "read", Resource: "collections/customers"},
				allow: true, rule: "support[0]",
				views: map[string]View{"email": Masked, "card_number": Masked, "ssn": Deny, "name": Plain}},
			{name: "allow/support searches customers",
				in:    Input{Principal: user("s1", "support"), Action: "search", Resource: "collections/customers"},
				allow: true, rule: "support[0]", views: map[string]View{"email": Masked, "ssn": Deny, "phone": Plain}},
			{name: "deny/support may not update",
				in:     Input{Principal: user("s1", "support"), Action: "update", Resource: "collections/customers"},
				reason: "no rule grants update on collections/customers to roles [support]",
				views:  map[string]View{"name": Deny}},
			{name: "deny/support on another collection",
				in:     Input{Principal: user("s1", "support"), Action: "read", Resource: "collections/orders"},
				reason: "no rule grants read on collections/orders to roles [support]"},
			{name: "allow/customer reads own record plain",
				in:    Input{Principal: user("c1", "customer"), Action: "read", Resource: "collections/customers", Owner: "c1"},
				allow: true, rule: "customer[0]", views: map[string]View{"ssn": Plain, "email": Plain}},
			{name: "allow/customer updates own record",
				in:    Input{Principal: user("c1", "customer"), Action: "update", Resource: "collections/customers", Owner: "c1"},
				allow: true, rule: "customer[0]", views: map[string]View{"ssn": Plain}},
			{name: "deny/customer reads another's record",
				in:     Input{Principal: user("c1", "customer"), Action: "read", Resource: "collections/customers", Owner: "c2"},
				reason: "condition of customer[0] is false", views: map[string]View{"ssn": Deny}},
			{name: "deny/customer reads a record without owner",
				in:     Input{Principal: user("c1", "customer"), Action: "read", Resource: "collections/customers"},
				reason: "condition of customer[0] is false"},
			{name: "deny/customer deletes own record",
				in:     Input{Principal: user("c1", "customer"), Action: "delete", Resource: "collections/customers", Owner: "c1"},
				reason: "no rule grants delete"},
			{name: "allow/customer with over a hundred roles runs the tracked program",
				in:    Input{Principal: many, Action: "read", Resource: "collections/customers", Owner: "c1"},
				allow: true, rule: "customer[0]"},
			{name: "deny/customer with over a hundred roles runs the tracked program",
				in:     Input{Principal: many, Action: "read", Resource: "collections/customers", Owner: "c2"},
				reason: "condition of customer[0] is false"},
			{name: "allow/billing-service tokenizes cards",
				in:    Input{Principal: user("svc", "billing-service"), Action: "tokenize", Resource: "tokens/card_number"},
				allow: true, rule: "billing-service[0]"},
			{name: "allow/billing-service makes linkable card tokens",
				in:    Input{Principal: user("svc", "billing-service"), Action: "tokenize_linkable", Resource: "tokens/card_number"},
				allow: true, rule: "billing-service[0]"},
			{name: "deny/support makes linkable tokens",
				in:     Input{Principal: user("s", "support"), Action: "tokenize_linkable", Resource: "tokens/card_number"},
				reason: "no rule grants tokenize_linkable"},
			{name: "allow/billing-service detokenizes cards plain",
				in:    Input{Principal: user("svc", "billing-service"), Action: "detokenize", Resource: "tokens/card_number"},
				allow: true, rule: "billing-service[0]", views: map[string]View{"card_number": Plain}},
			{name: "deny/billing-service detokenizes another type",
				in:     Input{Principal: user("svc", "billing-service"), Action: "detokenize", Resource: "tokens/ssn"},
				reason: "no rule grants detokenize on tokens/ssn to roles [billing-service]"},
			{name: "deny/billing-service reads records",
				in:     Input{Principal: user("svc", "billing-service"), Action: "read", Resource: "collections/customers"},
				reason: "no rule grants read"},
			{name: "allow/admin reads any collection plain",
				in:    Input{Principal: user("root", "admin"), Action: "read", Resource: "collections/anything"},
				allow: true, rule: "admin[0]", views: map[string]View{"ssn": Plain}},
			{name: "allow/admin updates the policy",
				in:    Input{Principal: user("root", "admin"), Action: "update", Resource: "policy"},
				allow: true, rule: "admin[0]"},
			{name: "allow/admin erases subjects",
				in:    Input{Principal: user("root", "admin"), Action: "delete", Resource: "subjects"},
				allow: true, rule: "admin[0]"},
			{name: "allow/admin lists collections",
				in:    Input{Principal: user("root", "admin"), Action: "admin", Resource: "collections/*"},
				allow: true, rule: "admin[0]"},
			{name: "deny/unknown role",
				in:     Input{Principal: user("x", "intern"), Action: "read", Resource: "collections/customers"},
				reason: "no rule grants read on collections/customers to roles [intern]"},
			{name: "deny/no roles",
				in:     Input{Principal: user("x"), Action: "read", Resource: "collections/customers"},
				reason: "to roles []"},
			{name: "deny/no principal",
				in:     Input{Action: "read", Resource: "collections/customers"},
				reason: "no principal"},
			{name: "deny/unknown action",
				in:     Input{Principal: user("root", "admin"), Action: "steal", Resource: "collections/customers"},
				reason: "unknown action"},
			{name: "deny/star is not an action to ask about",
				in:     Input{Principal: user("root", "admin"), Action: "*", Resource: "collections/customers"},
				reason: "unknown action"},
			{name: "deny/empty resource",
				in:     Input{Principal: user("root", "admin"), Action: "read"},
				reason: "no resource"},
			{name: "allow/auditor reads any collection through collections/*",
				in:    Input{Principal: user("a", "auditor"), Action: "read", Resource: "collections/orders"},
				allow: true, rule: "auditor[0]", views: map[string]View{"ssn": Masked, "email": Deny}},
			{name: "allow/auditor reads the audit log",
				in:    Input{Principal: user("a", "auditor"), Action: "read", Resource: "audit"},
				allow: true, rule: "auditor[0]"},
			{name: "deny/auditor reads security events",
				in:     Input{Principal: user("a", "auditor"), Action: "read", Resource: "security"},
				reason: "no rule grants read on security"},
			{name: "deny/collections/* does not match a top-level resource",
				in:     Input{Principal: user("a", "auditor"), Action: "read", Resource: "collections"},
				reason: "no rule grants"},
			{name: "allow/analyst glob matches customers2",
				in:    Input{Principal: us, Action: "search", Resource: "collections/customers2"},
				allow: true, rule: "analyst[0]", views: map[string]View{"email": Masked, "ssn": Deny}},
			{name: "deny/analyst glob does not match orders",
				in:     Input{Principal: us, Action: "search", Resource: "collections/orders"},
				reason: "no rule grants search"},
			{name: "allow/analyst outside eu sees only masked email",
				in:    Input{Principal: us, Action: "search", Resource: "collections/customers", IP: "10.1.2.3"},
				allow: true, rule: "analyst[0]", views: map[string]View{"email": Masked, "ssn": Deny, "name": Deny}},
			{name: "allow/analyst in eu combines the most permissive views",
				in:    Input{Principal: eu, Action: "search", Resource: "collections/customers", IP: "10.1.2.3"},
				allow: true, rule: "analyst[0]", views: map[string]View{"email": Plain, "ssn": Masked, "name": Deny}},
			{name: "allow/analyst in eu from outside the network gets the first rule only",
				in:    Input{Principal: eu, Action: "search", Resource: "collections/customers", IP: "192.0.2.1"},
				allow: true, rule: "analyst[0]", views: map[string]View{"email": Masked, "ssn": Deny}},
			{name: "allow/analyst without a team attribute still gets the first rule",
				in:    Input{Principal: user("a3", "analyst"), Action: "search", Resource: "collections/customers", IP: "10.0.0.1"},
				allow: true, rule: "analyst[0]", views: map[string]View{"email": Masked, "ssn": Deny}},
			{name: "allow/two roles combine views: support and own customer record",
				in:    Input{Principal: user("c1", "support", "customer"), Action: "read", Resource: "collections/customers", Owner: "c1"},
				allow: true, rule: "support[0]", views: map[string]View{"ssn": Plain, "email": Plain}},
			{name: "allow/two roles, other's record: support's views only",
				in:    Input{Principal: user("c1", "support", "customer"), Action: "read", Resource: "collections/customers", Owner: "c2"},
				allow: true, rule: "support[0]", views: map[string]View{"ssn": Deny, "email": Masked}},
			{name: "deny/breakglass without MFA",
				in:     Input{Principal: user("b1", "breakglass"), Action: "encrypt", Resource: "keys/payments"},
				reason: "role breakglass requires MFA"},
			{name: "allow/breakglass with MFA",
				in:    Input{Principal: mfa, Action: "decrypt", Resource: "keys/payments"},
				allow: true, rule: "breakglass[0]"},
			{name: "deny/breakglass with MFA outside its resources",
				in:     Input{Principal: mfa, Action: "read", Resource: "collections/customers"},
				reason: "no rule grants read on collections/customers to roles [breakglass]"},
			{name: "allow/office hours at 10:00 UTC",
				in:    Input{Principal: user("o", "office-hours"), Action: "encrypt", Resource: "keys/payments", Time: morning},
				allow: true, rule: "office-hours[0]"},
			{name: "deny/office hours at 20:00 UTC",
				in:     Input{Principal: user("o", "office-hours"), Action: "encrypt", Resource: "keys/payments", Time: evening},
				reason: "condition of office-hours[0] is false"},
		}
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				d := p.Decide(tt.in)
				if d.Allowed != tt.allow {
					t.Fatalf("Allowed = %v, want %v (rule %q, reason %q)", d.Allowed, tt.allow, d.Rule, d.Reason)
				}
				if tt.allow {
					if d.Rule != tt.rule || d.Reason != "" {
						t.Errorf("Rule, Reason = %q, %q; want %q, \"\"", d.Rule, d.Reason, tt.rule)
					}
				} else if !strings.Contains(d.Reason, tt.reason) || d.Rule != "" {
					t.Errorf("Reason, Rule = %q, %q; want it to contain %q, no rule", d.Reason, d.Rule, tt.reason)
				}
				for f, want := range tt.views {
					if got := d.View(f); got != want {
						t.Errorf("View(%q) = %v, want %v", f, got, want)
					}
				}
			})
		}
	}
}

func TestDecideConditionErrorDenies(t *testing.T) {
	p, err := Load([]byte(`roles:
  team:
    - resources: ["collections/*"]
      actions: [read]
      when: principal.attributes["team"] == "eu"
  heavy:
    - resources: ["*"]
      actions: [read]
      when: principal.roles.all(a, principal.roles.all(b, principal.roles.all(c, a + b + c != "")))
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide(Input{Principal: user("u", "team"), Action: "read", Resource: "collections/x"})
	if d.Allowed || d.Reason != "condition of team[0] could not be evaluated" {
		t.Errorf("missing attribute: got %+v, want denied as not evaluable", d)
	}
	pr := user("u", "heavy")
	for i := range 60 {
		pr.Roles = append(pr.Roles, fmt.Sprint("r", i))
	}
	d = p.Decide(Input{Principal: pr, Action: "read", Resource: "audit"})
	if d.Allowed || d.Reason != "condition of heavy[0] could not be evaluated" {
		t.Errorf("over the cost limit: got %+v, want denied as not evaluable", d)
	}
	d = p.Decide(Input{Principal: user("u", "heavy"), Action: "read", Resource: "audit"})
	if !d.Allowed {
		t.Errorf("within the cost limit: got %+v, want allowed", d)
	}
}

func TestZeroDecisionDeniesEveryField(t *testing.T) {
	var d Decision
	if d.Allowed || d.View("x") != Deny || d.AllPlain() {
		t.Errorf("zero Decision = %+v, View = %v; want denied", d, d.View("x"))
	}
}

func TestViewStringsRoundTrip(t *testing.T) {
	for _, v := range []View{Deny, Masked, Plain} {
		got, ok := ParseView(v.String())
		if !ok || got != v {
			t.Errorf("ParseView(%q) = %v, %v", v.String(), got, ok)
		}
	}
	if _, ok := ParseView("hidden"); ok {
		t.Error(`ParseView("hidden") succeeded`)
	}
}

func TestNeedsResource(t *testing.T) {
	p := loadFile(t, "example.yaml", FormatYAML)
	q, err := Load([]byte(`roles:
  col:
    - resources: ["collections/*"]
      actions: [read]
      when: resource.collection == "a" && resource.id != ""
  has:
    - resources: ["collections/*"]
      actions: [read]
      when: has(resource.owner)
  gated:
    require_mfa: true
    rules:
      - resources: ["collections/*"]
        actions: [read]
        when: resource.owner == principal.id
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		p      *Policy
		pr     *coffer.Principal
		action string
		res    string
		want   bool
	}{
		{"true/customer reads customers", p, user("c", "customer"), "read", "collections/customers", true},
		{"true/support and customer", p, user("c", "support", "customer"), "read", "collections/customers", true},
		{"false/support reads customers", p, user("s", "support"), "read", "collections/customers", false},
		{"false/admin", p, user("a", "admin"), "read", "collections/customers", false},
		{"false/customer deletes (no rule could grant it)", p, user("c", "customer"), "delete", "collections/customers", false},
		{"false/customer on another collection", p, user("c", "customer"), "read", "collections/orders", false},
		{"false/analyst condition reads principal and request only", p, user("a", "analyst"), "search", "collections/customers", false},
		{"false/unknown action", p, user("c", "customer"), "steal", "collections/customers", false},
		{"false/nil principal", p, nil, "read", "collections/customers", false},
		{"false/collection and id are known without the record", q, user("u", "col"), "read", "collections/a", false},
		{"true/has(resource.owner)", q, user("u", "has"), "read", "collections/a", true},
		{"false/MFA role without MFA grants nothing", q, user("u", "gated"), "read", "collections/a", false},
		{"true/MFA role with MFA", q, &coffer.Principal{ID: "u", Roles: []string{"gated"}, MFA: true}, "read", "collections/a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.NeedsResource(tt.pr, tt.action, tt.res); got != tt.want {
				t.Errorf("NeedsResource = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRequiresMFA(t *testing.T) {
	p := loadFile(t, "example.yaml", FormatYAML)
	for role, want := range map[string]bool{"breakglass": true, "admin": false, "nosuch": false} {
		if got := p.RequiresMFA(role); got != want {
			t.Errorf("RequiresMFA(%q) = %v, want %v", role, got, want)
		}
	}
	q, err := Load([]byte(`{"roles":{"r":{"require_mfa":false,"rules":[{"resources":["audit"],"actions":["read"]}]}}}`), FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	if q.RequiresMFA("r") || !q.Decide(Input{Principal: user("u", "r"), Action: "read", Resource: "audit"}).Allowed {
		t.Error("require_mfa: false should grant without MFA")
	}
}

func TestYAMLAndJSONAreEquivalent(t *testing.T) {
	y := loadFile(t, "example.yaml", FormatYAML)
	j := loadFile(t, "example.json", FormatJSON)
	yj, err := y.JSON()
	if err != nil {
		t.Fatal(err)
	}
	jj, err := j.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(yj) != string(jj) {
		t.Fatalf("normalised JSON differs:\nyaml: %s\njson: %s", yj, jj)
	}
	// The normalised form loads to the same policy.
	n, err := Load(yj, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	nj, _ := n.JSON()
	if string(nj) != string(yj) {
		t.Fatalf("JSON() is not stable:\n%s\n%s", yj, nj)
	}
	if !strings.Contains(string(yj), `"breakglass":{"require_mfa":true,"rules":[`) {
		t.Errorf("require_mfa role not in object form: %s", yj)
	}
}

func TestSourceIsTheDocumentAsLoaded(t *testing.T) {
	data, _ := os.ReadFile("testdata/example.yaml")
	p, err := Load(data, "YML")
	if err != nil {
		t.Fatal(err)
	}
	src, format := p.Source()
	if string(src) != string(data) || format != FormatYAML {
		t.Errorf("Source() = %d bytes, %q; want the %d loaded bytes, yaml", len(src), format, len(data))
	}
	src[0] = 'X'
	if again, _ := p.Source(); again[0] == 'X' {
		t.Error("Source() shares its bytes with the policy")
	}
	if got := p.Roles(); strings.Join(got, ",") != "admin,analyst,auditor,billing-service,breakglass,customer,office-hours,support" {
		t.Errorf("Roles() = %v", got)
	}
}

func TestDefaultGrantsAdminOnly(t *testing.T) {
	p := Default()
	for _, res := range []string{"collections/customers", "policy", "tokens/ssn", "keys/k", "audit", "clients", "users", "security"} {
		for _, act := range Actions() {
			if d := p.Decide(Input{Principal: user("root", "admin"), Action: act, Resource: res}); !d.Allowed || d.Rule != "admin[0]" || !d.AllPlain() {
				t.Errorf("admin %s %s: %+v", act, res, d)
			}
		}
	}
	if d := p.Decide(Input{Principal: user("u", "support"), Action: "read", Resource: "collections/customers"}); d.Allowed {
		t.Errorf("support allowed under the default policy: %+v", d)
	}
	src, format := p.Source()
	if q, err := Load(src, format); err != nil || !q.Decide(Input{Principal: user("root", "admin"), Action: "admin", Resource: "policy"}).Allowed {
		t.Errorf("default source does not reload: %v", err)
	}
}

func TestDenyAllDeniesAdmin(t *testing.T) {
	p := DenyAll()
	if d := p.Decide(Input{Principal: user("root", "admin"), Action: "read", Resource: "policy"}); d.Allowed {
		t.Errorf("DenyAll allowed: %+v", d)
	}
	var nilPolicy *Policy
	if d := nilPolicy.Decide(Input{Principal: user("root", "admin"), Action: "read", Resource: "policy"}); d.Allowed {
		t.Errorf("nil policy allowed: %+v", d)
	}
}

func TestDecideIsSafeForConcurrentUse(t *testing.T) {
	p := loadFile(t, "example.yaml", FormatYAML)
	done := make(chan error)
	for g := range 4 {
		go func() {
			for i := range 500 {
				owner := "c1"
				if (i+g)%2 == 1 {
					owner = "c2"
				}
				d := p.Decide(Input{Principal: user("c1", "customer"), Action: "read", Resource: "collections/customers", Owner: owner})
				if d.Allowed != (owner == "c1") {
					done <- fmt.Errorf("owner %s: %+v", owner, d)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestProblemsErrorSummarises(t *testing.T) {
	one := &ProblemsError{Problems: []Problem{{Path: "roles.a", Message: "role has no rules"}}}
	if got := one.Error(); got != "policy: roles.a: role has no rules" {
		t.Errorf("Error() = %q", got)
	}
	two := &ProblemsError{Problems: []Problem{{Path: "roles.a", Message: "x"}, {Message: "y"}}}
	if got := two.Error(); got != "policy: 2 problems, first: roles.a: x" {
		t.Errorf("Error() = %q", got)
	}
	var pe *ProblemsError
	_, err := Load([]byte("roles: {a: []}"), FormatYAML)
	if !errors.As(err, &pe) {
		t.Fatalf("Load error %T is not a *ProblemsError", err)
	}
}
