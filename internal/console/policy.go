package console

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/policy"
	"github.com/cofferhq/coffer/internal/policystore"
)

type policyData struct {
	Doc      string
	Format   string
	Problems []string
	Saved    bool
	Check    *checkForm
	Result   *checkResult
	Tests    string
	Results  []testRow
	Actions  []string
}

type checkForm struct {
	ID, Kind, Roles, Attributes, Action, Resource, Owner, Fields string
	MFA                                                          bool
}

type checkResult struct {
	Allowed bool              `json:"allowed"`
	Rule    string            `json:"rule"`
	Reason  string            `json:"reason"`
	Fields  map[string]string `json:"fields"`
	Names   []string          `json:"-"`
}

type testRow struct {
	Name, Message, Got string
	Pass               bool
}

const sampleTests = `tests:
  - name: support sees email masked
    principal: {id: u1, kind: user, roles: [support]}
    action: read
    resource: collections/customers
    expect: allow
    fields: {email: masked, ssn: deny}
`

// loadPolicy reads the document in force through the API.
func (con *Console) loadPolicy(r *http.Request, s *session, d *policyData) *Problem {
	res := con.callJSON(r, s, http.MethodGet, "/v1/policy", nil)
	if p := res.problem(); p != nil {
		return p
	}
	d.Doc = string(res.Body)
	d.Format = "json"
	if strings.Contains(res.Header.Get("Content-Type"), "yaml") {
		d.Format = "yaml"
	}
	return nil
}

func newPolicyData() *policyData {
	return &policyData{Check: &checkForm{Kind: "user", Action: "read", Resource: "collections/"}, Tests: sampleTests,
		Actions: policy.Actions()}
}

func (con *Console) policyPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := newPolicyData()
	pg := page{Title: "Policy", Nav: "policy", Data: d}
	if p := con.loadPolicy(r, s, d); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "policy", pg)
		return
	}
	con.render(w, r, s, http.StatusOK, "policy", pg)
}

func formFormat(r *http.Request) string {
	if r.PostFormValue("format") == "json" {
		return "json"
	}
	return "yaml"
}

// policyValidate compiles the editor's document (for validation as you
// type) and answers {"ok","problems"} as JSON. It reads nothing stored.
func (con *Console) policyValidate(w http.ResponseWriter, r *http.Request, s *session) {
	_, problems := compilePolicy(r.PostFormValue("doc"), formFormat(r))
	if problems == nil {
		problems = con.lockoutProblems(s, r.PostFormValue("doc"), formFormat(r))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": len(problems) == 0, "problems": problems})
}

// lockoutProblems refuses a document under which the signed-in user could
// no longer read or change the policy (policystore.SelfLockout, the
// lockout rule's stricter form for the editor).
func (con *Console) lockoutProblems(s *session, doc, format string) []string {
	p, problems := compilePolicy(doc, format)
	if problems != nil {
		return problems
	}
	me := &coffer.Principal{ID: s.principal, Kind: s.kind, Roles: s.roles, Attributes: s.attrs, MFA: s.mfa}
	return policystore.SelfLockout(p, me, "", con.c.Now())
}

func (con *Console) policySave(w http.ResponseWriter, r *http.Request, s *session) {
	d := newPolicyData()
	d.Doc, d.Format = r.PostFormValue("doc"), formFormat(r)
	pg := page{Title: "Policy", Nav: "policy", Data: d}
	if d.Problems = con.lockoutProblems(s, d.Doc, d.Format); d.Problems != nil {
		pg.Error = &Problem{Status: 422, Detail: "The policy was not saved; the one in force stays."}
		con.render(w, r, s, http.StatusUnprocessableEntity, "policy", pg)
		return
	}
	if !con.fresh(w, r, s, Prefix+"policy") {
		return
	}
	ct := "application/yaml"
	if d.Format == "json" {
		ct = "application/json"
	}
	res := con.call(r, s.token, http.MethodPut, "/v1/policy", ct, []byte(d.Doc))
	if p := res.problem(); p != nil {
		d.Problems = p.Problems
		pg.Error = p
		con.render(w, r, s, p.Status, "policy", pg)
		return
	}
	con.sessions.setFlash(s, "Policy saved and in force.")
	http.Redirect(w, r, Prefix+"policy", http.StatusSeeOther)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// policyCheck explains a decision through POST /v1/policy/check.
func (con *Console) policyCheck(w http.ResponseWriter, r *http.Request, s *session) {
	d := newPolicyData()
	pg := page{Title: "Policy", Nav: "policy", Data: d}
	if p := con.loadPolicy(r, s, d); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "policy", pg)
		return
	}
	cf := &checkForm{ID: r.PostFormValue("id"), Kind: r.PostFormValue("kind"), Roles: r.PostFormValue("roles"),
		Attributes: r.PostFormValue("attributes"), Action: r.PostFormValue("action"), Resource: r.PostFormValue("resource"),
		Owner: r.PostFormValue("owner"), Fields: r.PostFormValue("fields"), MFA: r.PostFormValue("mfa") == "on"}
	d.Check = cf
	attrs := map[string]string{}
	for _, line := range strings.Split(cf.Attributes, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k != "" {
			attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	body := map[string]any{
		"principal": map[string]any{"id": cf.ID, "kind": cf.Kind, "roles": splitList(cf.Roles), "attributes": attrs, "mfa": cf.MFA},
		"action":    cf.Action, "resource": cf.Resource, "owner": cf.Owner, "fields": splitList(cf.Fields),
	}
	res := con.callJSON(r, s, http.MethodPost, "/v1/policy/check", body)
	if p := res.problem(); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "policy", pg)
		return
	}
	var cr checkResult
	if err := res.decode(&cr); err != nil {
		pg.Error = &Problem{Status: 502, Detail: "the answer could not be read"}
	}
	for f := range cr.Fields {
		cr.Names = append(cr.Names, f)
	}
	sort.Strings(cr.Names)
	d.Result = &cr
	con.render(w, r, s, http.StatusOK, "policy", pg)
}

// policyTest runs a policy test table (as `coffer policy test`) against
// the editor's document; it reads nothing stored.
func (con *Console) policyTest(w http.ResponseWriter, r *http.Request, s *session) {
	d := newPolicyData()
	d.Doc, d.Format, d.Tests = r.PostFormValue("doc"), formFormat(r), r.PostFormValue("tests")
	pg := page{Title: "Policy", Nav: "policy", Data: d}
	p, problems := compilePolicy(d.Doc, d.Format)
	if problems != nil {
		d.Problems = problems
		pg.Error = &Problem{Status: 422, Detail: "The policy does not compile."}
		con.render(w, r, s, http.StatusUnprocessableEntity, "policy", pg)
		return
	}
	results, err := policy.RunTests(p, []byte(d.Tests))
	if err != nil {
		pg.Error = &Problem{Status: 422, Detail: "The test table could not be read: " + err.Error()}
		con.render(w, r, s, http.StatusUnprocessableEntity, "policy", pg)
		return
	}
	for _, tr := range results {
		got := "deny"
		if tr.Got.Allowed {
			got = "allow (" + tr.Got.Rule + ")"
		} else if tr.Got.Reason != "" {
			got += " (" + tr.Got.Reason + ")"
		}
		d.Results = append(d.Results, testRow{Name: tr.Name, Pass: tr.Pass, Message: tr.Message, Got: got})
	}
	con.render(w, r, s, http.StatusOK, "policy", pg)
}
