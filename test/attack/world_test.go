package attack

import (
	"encoding/json"
	"net/url"
	"reflect"
	"sort"
	"testing"
)

// policyDoc is the policy planted in every world: an owner-scoped
// customer role (the IDOR target), a support role with field views, and a
// clerk who may create and list clients but holds no admin.
const policyDoc = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  customer:
    - resources: ["collections/customers"]
      actions: [create, read, update, delete, search]
      when: resource.owner == principal.id
      fields: {"*": plain}
  support:
    - resources: ["collections/customers"]
      actions: [read, search]
      fields: {ssn: deny, card_number: masked, "*": plain}
  clerk:
    - resources: ["clients"]
      actions: [create, read]
  manager:
    - resources: ["clients", "users"]
      actions: [create, read, update, delete]
`

// customers is the planted collection's schema.
var customers = map[string]any{
	"name": "customers",
	"fields": []map[string]any{
		{"name": "name", "type": "string", "searchable": true},
		{"name": "email", "type": "email", "searchable": true},
		{"name": "card_number", "type": "card_number"},
		{"name": "ssn", "type": "ssn"},
		{"name": "age", "type": "integer", "searchable": true},
		{"name": "birth_date", "type": "date"},
	},
}

// world is the data planted before an attack, and who may touch it.
type world struct {
	n *node
	// clientA and clientB hold role customer; each owns one record.
	clientA, tokenA string
	clientB, tokenB string
	// support reads and searches every customer.
	tokenSupport string
	// clerk may create clients but not grant roles it lacks.
	clerkID, tokenClerk string
	// manager may create, update and delete clients and users, but holds
	// no admin and only the attribute team=ops.
	managerID, tokenManager string
	recA, recB, recC        string   // records owned by A, B and a third owner "owner-c" (subject "subject-c")
	aliceID                 string   // the planted user alice (role support)
	tokens                  []string // planted tokens of tokenValue
	ciphertext              string   // transit ciphertext of "planted" under key k1
	forged                  map[string]string
}

// alicePassword is the planted user alice's password.
const alicePassword = "correct horse battery staple 9"

// tokenValue is the card number behind the planted tokens.
const tokenValue = "4111111111111111"

// plantWorld builds the world on n.
func plantWorld(t *testing.T, n *node) *world {
	t.Helper()
	w := &world{n: n}
	r := n.send(t, req{method: "PUT", path: "/v1/policy", token: n.admin, contentType: "application/yaml", body: []byte(policyDoc)})
	if r.status != 204 {
		t.Fatalf("put policy: %s", r)
	}
	n.must(t, 201, "POST", "/v1/collections", n.admin, customers, nil)
	w.clientA, w.tokenA = n.newClient(t, "customer-a", "customer")
	w.clientB, w.tokenB = n.newClient(t, "customer-b", "customer")
	_, w.tokenSupport = n.newClient(t, "support", "support")
	w.clerkID, w.tokenClerk = n.newClient(t, "clerk", "clerk")
	var mgr struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	n.must(t, 201, "POST", "/v1/clients", n.admin, map[string]any{"name": "manager", "roles": []string{"manager"},
		"attributes": map[string]string{"team": "ops"}}, &mgr)
	w.managerID, w.tokenManager = mgr.ClientID, n.Token(mgr.ClientID, mgr.ClientSecret)
	w.recA = w.record(t, w.clientA, "subject-a", map[string]any{"name": "Ada Lovelace", "email": "ada@example.com",
		"card_number": "4111 1111 1111 1111", "ssn": "123-45-6789", "age": 36, "birth_date": "1815-12-10"})
	w.recB = w.record(t, w.clientB, "subject-b", map[string]any{"name": "Bob Babbage", "email": "bob@example.com",
		"card_number": "5555 5555 5555 4444", "ssn": "234-56-7890", "age": 79, "birth_date": "1791-12-26"})
	w.recC = w.record(t, "owner-c", "subject-c", map[string]any{"name": "Cleo Clerk", "email": "cleo@example.com", "age": 1})
	var tok struct {
		Tokens []string `json:"tokens"`
	}
	n.must(t, 200, "POST", "/v1/tokenize", n.admin, map[string]any{"items": []map[string]any{
		{"value": tokenValue, "type": "card_number"},
		{"value": tokenValue, "type": "card_number", "mode": "deterministic"},
	}}, &tok)
	w.tokens = tok.Tokens
	var alice struct {
		ID string `json:"id"`
	}
	n.must(t, 201, "POST", "/v1/users", n.admin, map[string]any{"username": "alice", "password": alicePassword, "roles": []string{"support"}}, &alice)
	w.aliceID = alice.ID
	n.must(t, 201, "POST", "/v1/keys", n.admin, map[string]any{"name": "k1"}, nil)
	var ct struct {
		Ciphertext string `json:"ciphertext"`
	}
	n.must(t, 200, "POST", "/v1/keys/k1/encrypt", n.admin, map[string]any{"plaintext": "cGxhbnRlZA=="}, &ct)
	w.ciphertext = ct.Ciphertext
	return w
}

func (w *world) record(t *testing.T, owner, subject string, data map[string]any) string {
	t.Helper()
	var out struct {
		ID string `json:"id"`
	}
	w.n.must(t, 201, "POST", "/v1/collections/customers/records", w.n.admin,
		map[string]any{"owner": owner, "subject": subject, "data": data}, &out)
	return out.ID
}

// snapshot reads back, as the admin, everything an attack might change:
// the planted records, every record a search can find, the policy, the
// clients, the collections, key k1 and what the planted tokens and
// ciphertext stand for.
func (w *world) snapshot(t *testing.T) map[string]any {
	t.Helper()
	n := w.n
	s := map[string]any{}
	for _, id := range []string{w.recA, w.recB, w.recC} {
		var v any
		n.must(t, 200, "GET", "/v1/collections/customers/records/"+id, n.admin, nil, &v)
		s["record "+id] = v
	}
	var found struct {
		Records []map[string]any `json:"records"`
	}
	ids := []string{}
	for _, email := range []string{"ada@example.com", "bob@example.com", "cleo@example.com"} {
		n.must(t, 200, "POST", "/v1/collections/customers/records/search", n.admin,
			map[string]any{"where": map[string]any{"email": email}}, &found)
		for _, r := range found.Records {
			ids = append(ids, r["id"].(string))
		}
	}
	sort.Strings(ids)
	s["search"] = ids
	r := n.call(t, "GET", "/v1/policy", n.admin, nil)
	if r.status != 200 {
		t.Fatalf("get policy: %s", r)
	}
	s["policy"] = string(r.body)
	var cl struct {
		Clients []map[string]any `json:"clients"`
	}
	n.must(t, 200, "GET", "/v1/clients", n.admin, nil, &cl)
	clients := []string{}
	for _, c := range cl.Clients {
		b, _ := json.Marshal(map[string]any{"id": c["client_id"], "name": c["name"], "roles": c["roles"], "attributes": c["attributes"],
			"disabled": c["disabled"]})
		clients = append(clients, string(b))
	}
	sort.Strings(clients)
	s["clients"] = clients
	// alice (no MFA) still signs in with her password and her role.
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	n.must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": alicePassword}, &tr)
	s["alice"] = n.call(t, "GET", "/v1/collections/customers/records/"+w.recA, tr.AccessToken, nil).status
	var cols any
	n.must(t, 200, "GET", "/v1/collections", n.admin, nil, &cols)
	s["collections"] = cols
	var key map[string]any
	n.must(t, 200, "GET", "/v1/keys/k1", n.admin, nil, &key)
	delete(key, "last_used") // bookkeeping, not data
	s["key"] = key
	var vals any
	n.must(t, 200, "POST", "/v1/detokenize", n.admin, map[string]any{"tokens": w.tokens}, &vals)
	s["detokenize"] = vals
	var pt any
	n.must(t, 200, "POST", "/v1/keys/k1/decrypt", n.admin, map[string]any{"ciphertext": w.ciphertext}, &pt)
	s["decrypt"] = pt
	return s
}

// unchanged fails when the world differs from before.
func (w *world) unchanged(t *testing.T, before map[string]any) {
	t.Helper()
	after := w.snapshot(t)
	for k, v := range before {
		if !reflect.DeepEqual(v, after[k]) {
			t.Errorf("stored data changed by the attack: %s\nbefore: %v\nafter:  %v", k, v, after[k])
		}
	}
}

// esc escapes a payload as one path segment.
func esc(s string) string { return url.PathEscape(s) }

// q escapes a payload as a query value.
func q(s string) string { return url.QueryEscape(s) }
