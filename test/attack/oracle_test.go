package attack

import (
	"bytes"
	"testing"
)

// The class "search/value oracles": a request that tests a stored value
// must not answer differently for a right and a wrong guess unless the
// caller may see the value in plain anyway. Search is such a test (one
// hit or none), so a field may appear in `where` only when the caller's
// view of it under the search decision is plain; detokenize shows a
// token's value only through the caller's view of its type.

// oraclePolicy gives every kind of view a searcher may hold.
const oraclePolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  support:
    - resources: ["collections/people"]
      actions: [read, search]
      fields: {ssn: deny, email: masked, "*": plain}
  counter:
    - resources: ["collections/people"]
      actions: [search]
      fields: {"*": deny}
  customer:
    - resources: ["collections/people"]
      actions: [read, search]
      when: resource.owner == principal.id
      fields: {ssn: deny, "*": plain}
  mixed:
    - resources: ["collections/people"]
      actions: [search]
      fields: {"*": deny}
    - resources: ["collections/people"]
      actions: [read, search]
      when: resource.owner == principal.id
      fields: {"*": plain}
  teller:
    - resources: ["tokens/ssn"]
      actions: [tokenize, detokenize]
      fields: {"*": deny}
`

var people = map[string]any{
	"name": "people",
	"fields": []map[string]any{
		{"name": "name", "type": "string", "searchable": true},
		{"name": "email", "type": "email", "searchable": true},
		{"name": "ssn", "type": "ssn", "searchable": true},
		{"name": "age", "type": "integer", "searchable": true},
	},
}

// TestSearchOracles: each way of testing a stored value through search or
// detokenize, by a caller whose view of the field is not plain, is a 403
// naming the field, the same for a right and a wrong guess; a plain view
// searches as before.
func TestSearchOracles(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		r := n.send(t, req{method: "PUT", path: "/v1/policy", token: n.admin, contentType: "application/yaml", body: []byte(oraclePolicy)})
		if r.status != 204 {
			t.Fatalf("put policy: %s", r)
		}
		n.must(t, 201, "POST", "/v1/collections", n.admin, people, nil)
		_, support := n.newClient(t, "support", "support")
		_, counter := n.newClient(t, "counter", "counter")
		custID, customer := n.newClient(t, "customer", "customer")
		mixedID, mixed := n.newClient(t, "mixed", "mixed")
		_, teller := n.newClient(t, "teller", "teller")
		add := func(owner string, data map[string]any) string {
			var out struct{ ID string }
			n.must(t, 201, "POST", "/v1/collections/people/records", n.admin, map[string]any{"owner": owner, "data": data}, &out)
			return out.ID
		}
		own := add(custID, map[string]any{"name": "Ada", "email": "ada@example.com", "ssn": "123-45-6789", "age": 36})
		add(mixedID, map[string]any{"name": "Mia", "email": "mia@example.com", "ssn": "345-67-8901", "age": 50})
		add("someone-else", map[string]any{"name": "Bob", "email": "bob@example.com", "ssn": "234-56-7890", "age": 79})
		search := func(tok, where string) reply {
			return n.call(t, "POST", "/v1/collections/people/records/search", tok, `{"where":`+where+`}`)
		}
		// refused checks that a right and a wrong guess get the same 403,
		// byte for byte but for the request id.
		refused := func(t *testing.T, tok, field, right, wrong string) {
			t.Helper()
			detail := `not allowed to search by field "` + field + `": the caller may not see it in plain`
			a, b := search(tok, right), search(tok, wrong)
			pa, pb := wantProblem(t, a, 403, detail), wantProblem(t, b, 403, detail)
			if !bytes.Equal(bytes.ReplaceAll(a.body, []byte(pa.RequestID), nil), bytes.ReplaceAll(b.body, []byte(pb.RequestID), nil)) {
				t.Errorf("a right and a wrong guess answer differently:\n%s\n%s", a.body, b.body)
			}
		}
		t.Run("denied field: the example support role confirms no SSN", func(t *testing.T) {
			refused(t, support, "ssn", `{"ssn":"123-45-6789"}`, `{"ssn":"123-45-6780"}`)
		})
		t.Run("masked field: nothing beyond the mask", func(t *testing.T) {
			refused(t, support, "email", `{"email":"ada@example.com"}`, `{"email":"ann@example.com"}`)
		})
		t.Run("a search-only role that sees nothing recovers no age", func(t *testing.T) {
			refused(t, counter, "age", `{"age":36}`, `{"age":37}`)
		})
		t.Run("one denied field among plain ones", func(t *testing.T) {
			refused(t, support, "ssn", `{"name":"Ada","ssn":"123-45-6789"}`, `{"name":"Ada","ssn":"123-45-6780"}`)
		})
		t.Run("owner-scoped role: its denied field is refused, even on its own record", func(t *testing.T) {
			refused(t, customer, "ssn", `{"ssn":"123-45-6789"}`, `{"ssn":"123-45-6780"}`)
			var hits searchHits
			n.must(t, 200, "POST", "/v1/collections/people/records/search", customer, `{"where":{"name":"Ada"}}`, &hits)
			if ids := hits.ids(); len(ids) != 1 || ids[0] != own {
				t.Errorf("the customer's search by name found %v, want its own record", ids)
			}
		})
		t.Run("plain only on its own records: others' values are never tested", func(t *testing.T) {
			var right, wrong searchHits
			n.must(t, 200, "POST", "/v1/collections/people/records/search", mixed, `{"where":{"age":79}}`, &right)
			n.must(t, 200, "POST", "/v1/collections/people/records/search", mixed, `{"where":{"age":78}}`, &wrong)
			if len(right.Records) != 0 || len(wrong.Records) != 0 {
				t.Errorf("another owner's age is testable: right guess %v, wrong guess %v", right.ids(), wrong.ids())
			}
			var mine searchHits
			n.must(t, 200, "POST", "/v1/collections/people/records/search", mixed, `{"where":{"age":50}}`, &mine)
			if len(mine.Records) != 1 {
				t.Errorf("its own record by age: %v", mine.ids())
			}
		})
		t.Run("plain view searches", func(t *testing.T) {
			var hits searchHits
			n.must(t, 200, "POST", "/v1/collections/people/records/search", support, `{"where":{"name":"Ada","age":36}}`, &hits)
			if ids := hits.ids(); len(ids) != 1 || ids[0] != own {
				t.Errorf("support's search by plain fields found %v", ids)
			}
		})
		t.Run("detokenize under a deny view reveals nothing", func(t *testing.T) {
			var tok struct{ Tokens []string }
			n.must(t, 200, "POST", "/v1/tokenize", teller, `{"items":[{"value":"123-45-6789","type":"ssn"}]}`, &tok)
			wantProblem(t, n.call(t, "POST", "/v1/detokenize", teller, map[string]any{"tokens": tok.Tokens}), 403,
				"not allowed to detokenize tokens")
		})
		noEchoInLog(t, n)
	})
}
