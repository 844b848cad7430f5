package attack

import (
	"bytes"
	"reflect"
	"testing"
)

// notFoundLike checks that r is the same 404 as a record that does not
// exist, so a denied id tells nothing.
func notFoundLike(t *testing.T, r reply) {
	t.Helper()
	wantProblem(t, r, 404, "record not found")
}

type searchHits struct {
	Records []struct {
		ID    string `json:"id"`
		Owner string `json:"owner"`
	} `json:"records"`
}

func (s searchHits) ids() []string {
	out := []string{}
	for _, r := range s.Records {
		out = append(out, r.ID)
	}
	return out
}

// idorAttacks: customer A, whose policy allows only records it owns,
// aims at B's and a third owner's records by id and by search.
func idorAttacks() []attack {
	const recs = "/v1/collections/customers/records/"
	return []attack{
		{"GET /v1/collections/{c}/records/{id}", "customer A reads B's record: 404 like a missing id", func(t *testing.T, w *world) {
			n := w.n
			n.must(t, 200, "GET", recs+w.recA, w.tokenA, nil, nil)
			missing := n.call(t, "GET", recs+"01a22400-0000-7000-8000-000000000000", w.tokenA, nil)
			notFoundLike(t, missing)
			for _, id := range []string{w.recB, w.recC} {
				r := n.call(t, "GET", recs+id, w.tokenA, nil)
				notFoundLike(t, r)
				if len(r.body) != len(missing.body) {
					t.Errorf("a denied id answers %d bytes, a missing one %d: the length tells them apart", len(r.body), len(missing.body))
				}
			}
			// support reads B, with the ssn withheld and the card masked.
			var v struct{ Data map[string]any }
			n.must(t, 200, "GET", recs+w.recB, w.tokenSupport, nil, &v)
			if _, ok := v.Data["ssn"]; ok || v.Data["card_number"] == "5555 5555 5555 4444" || v.Data["name"] != "Bob Babbage" {
				t.Errorf("support's view of B: %v", v.Data)
			}
		}},
		{"PATCH /v1/collections/{c}/records/{id}", "customer A updates B's record: 404", func(t *testing.T, w *world) {
			for _, id := range []string{w.recB, w.recC} {
				notFoundLike(t, w.n.call(t, "PATCH", recs+id, w.tokenA, `{"data":{"name":"Mallory"}}`))
			}
		}},
		{"DELETE /v1/collections/{c}/records/{id}", "customer A deletes B's record: 404", func(t *testing.T, w *world) {
			for _, id := range []string{w.recB, w.recC} {
				notFoundLike(t, w.n.call(t, "DELETE", recs+id, w.tokenA, nil))
			}
		}},
		{"POST /v1/collections/{c}/records/search", "customer A searches for B's record: absent", func(t *testing.T, w *world) {
			search := func(where string) []string {
				var hits searchHits
				w.n.must(t, 200, "POST", "/v1/collections/customers/records/search", w.tokenA, `{"where":`+where+`}`, &hits)
				return hits.ids()
			}
			if got := search(`{"email":"ada@example.com"}`); !reflect.DeepEqual(got, []string{w.recA}) {
				t.Fatalf("A's search for its own email: %v", got)
			}
			for _, where := range []string{`{"email":"bob@example.com"}`, `{"email":"BOB@EXAMPLE.COM"}`, `{"name":"Bob Babbage"}`,
				`{"age":79}`, `{"age":"79"}`, `{"age":1}`, `{"email":"cleo@example.com"}`, `{"name":"Bob Babbage","email":"bob@example.com"}`} {
				if got := search(where); len(got) != 0 {
					t.Errorf("A's search %s found %v", where, got)
				}
			}
			var hits searchHits
			w.n.must(t, 200, "POST", "/v1/collections/customers/records/search", w.tokenSupport, `{"where":{"email":"bob@example.com"}}`, &hits)
			if !reflect.DeepEqual(hits.ids(), []string{w.recB}) {
				t.Errorf("support's search for B: %v (the search A ran could not have found it)", hits.ids())
			}
		}},
		{"POST /v1/collections/{c}/records", "customer A creates a record owned by B: 403; duplicate owner keys decide as they store", func(t *testing.T, w *world) {
			n := w.n
			create := func(body string) reply { return n.call(t, "POST", recs[:len(recs)-1], w.tokenA, body) }
			wantProblem(t, create(`{"owner":"`+w.clientB+`","data":{"name":"planted by A"}}`), 403, "not allowed to create collections/customers")
			// Go's decoder keeps the last of duplicate keys and matches
			// keys case-insensitively: the policy must see the owner that
			// is stored.
			for _, body := range []string{
				`{"owner":"` + w.clientA + `","owner":"` + w.clientB + `","data":{"name":"dup"}}`,
				`{"owner":"` + w.clientA + `","OWNER":"` + w.clientB + `","data":{"name":"dup"}}`,
				`{"Owner":"` + w.clientB + `","data":{"name":"dup"}}`,
			} {
				wantProblem(t, create(body), 403, "not allowed to create collections/customers")
			}
			for _, body := range []string{
				`{"owner":"` + w.clientB + `","owner":"` + w.clientA + `","data":{"name":"dup"}}`,
				`{"OWNER":"` + w.clientB + `","owner":"` + w.clientA + `","data":{"name":"dup"}}`,
			} {
				var made struct{ ID string }
				wantJSON(t, create(body), 201, &made)
				var got struct{ Owner string }
				n.must(t, 200, "GET", recs+made.ID, n.admin, nil, &got)
				if got.Owner != w.clientA {
					t.Errorf("%s stored owner %q, but the policy decided on %q", body, got.Owner, w.clientA)
				}
				// A may update and delete its own record: the 404s above are the owner rule.
				n.must(t, 200, "PATCH", recs+made.ID, w.tokenA, `{"data":{"name":"updated"}}`, nil)
				notFoundLike(t, n.call(t, "PATCH", recs+made.ID, w.tokenB, `{"data":{"name":"Mallory"}}`))
				n.must(t, 204, "DELETE", recs+made.ID, w.tokenA, nil, nil)
			}
			wantProblem(t, create(`{"owner":"`+w.clientA+`","canary":true,"data":{"name":"decoy"}}`), 403, "not allowed to admin collections/customers")
		}},
		{"DELETE /v1/subjects/{subject}", "customer A erases B's subject: 403", func(t *testing.T, w *world) {
			wantProblem(t, w.n.call(t, "DELETE", "/v1/subjects/subject-b", w.tokenA, nil), 403, "not allowed to delete subjects")
		}},
		{"POST /v1/detokenize", "a customer detokenizes a planted token: 403", func(t *testing.T, w *world) {
			// No right to detokenize any type: one answer, whatever the
			// tokens (see tokenoracle_test.go).
			r := w.n.call(t, "POST", "/v1/detokenize", w.tokenA, map[string]any{"tokens": w.tokens})
			wantProblem(t, r, 403, "not allowed to detokenize tokens")
		}},
		{"POST /v1/keys/{name}/decrypt", "a customer decrypts under k1: 403", func(t *testing.T, w *world) {
			r := w.n.call(t, "POST", "/v1/keys/k1/decrypt", w.tokenA, map[string]any{"ciphertext": w.ciphertext})
			wantProblem(t, r, 403, "not allowed to decrypt keys/k1")
		}},
		{"GET /v1/keys/wrapping_key", "a customer fetches the wrapping key: 403", func(t *testing.T, w *world) {
			wantProblem(t, w.n.call(t, "GET", "/v1/keys/wrapping_key", w.tokenA, nil), 403, "not allowed to admin keys/wrapping_key")
		}},
		{"POST /v1/keys/{name}/import", "a customer imports a key: 403", func(t *testing.T, w *world) {
			r := w.n.call(t, "POST", "/v1/keys/imported/import", w.tokenA, map[string]any{"ciphertext": "AAAA"})
			wantProblem(t, r, 403, "not allowed to admin keys/imported")
		}},
		{"POST /v1/keys/{name}/import_version", "a customer imports a version of k1: 403", func(t *testing.T, w *world) {
			r := w.n.call(t, "POST", "/v1/keys/k1/import_version", w.tokenA, map[string]any{"ciphertext": "AAAA"})
			wantProblem(t, r, 403, "not allowed to admin keys/k1")
		}},
		{"GET /v1/audit/events", "a customer reads the audit log: 403", func(t *testing.T, w *world) {
			wantProblem(t, w.n.call(t, "GET", "/v1/audit/events", w.tokenA, nil), 403, "not allowed to read audit")
		}},
		{"GET /v1/policy", "a customer reads the policy: 403", func(t *testing.T, w *world) {
			wantProblem(t, w.n.call(t, "GET", "/v1/policy", w.tokenA, nil), 403, "not allowed to read policy")
		}},
		{"PUT /v1/policy", "a customer replaces the policy: 403", func(t *testing.T, w *world) {
			r := w.n.send(t, req{method: "PUT", path: "/v1/policy", token: w.tokenA, contentType: "application/yaml",
				body: []byte("roles:\n  customer:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n")})
			wantProblem(t, r, 403, "not allowed to update policy")
		}},
		{"DELETE /v1/clients/{id}", "the clerk deletes a client: 403", func(t *testing.T, w *world) {
			wantProblem(t, w.n.call(t, "DELETE", "/v1/clients/"+w.clientB, w.tokenClerk, nil), 403, "not allowed to delete clients")
		}},
		{"POST /v1/clients/{id}/rotate", "the clerk rotates the admin's secret: 403", func(t *testing.T, w *world) {
			wantProblem(t, w.n.call(t, "POST", "/v1/clients/"+w.n.Init.ClientID+"/rotate", w.tokenClerk, nil), 403, "not allowed to update clients")
		}},
	}
}

// massAssignmentAttacks set what a caller must not choose: ids, times,
// owners, roles.
func massAssignmentAttacks() []attack {
	const recs = "/v1/collections/customers/records"
	return []attack{
		{"PATCH /v1/collections/{c}/records/{id}", "PATCH of id, owner, subject and times is 422", func(t *testing.T, w *world) {
			for _, f := range []string{"id", "owner", "subject", "created_at", "updated_at", "expires_at", "collection"} {
				r := w.n.call(t, "PATCH", recs+"/"+w.recA, w.n.admin, `{"data":{"name":"x"},"`+f+`":"`+marker+`"}`)
				wantProblem(t, r, 422, `unknown field "`+f+`"`)
			}
			r := w.n.call(t, "PATCH", recs+"/"+w.recA, w.n.admin, `{"data":{"owner":"`+marker+`"}}`)
			wantProblems(t, r, `field "owner" is not in the schema of collection "customers"`, `field "owner" is not in the schema of collection "customers"`)
			r = w.n.call(t, "PATCH", recs+"/"+w.recA, w.n.admin, `{"data":{"roles":["admin"],"admin":true,"name":"x"}}`)
			wantProblems(t, r, `field "admin" is not in the schema of collection "customers"; field "roles" is not in the schema of collection "customers"`,
				`field "admin" is not in the schema of collection "customers"`, `field "roles" is not in the schema of collection "customers"`)
			r = w.n.call(t, "PATCH", recs+"/"+w.recA, w.tokenA, `{"data":{"name":"x"},"owner":"`+w.clientB+`"}`)
			wantProblem(t, r, 422, `unknown field "owner"`)
		}},
		{"POST /v1/collections/{c}/records", "choosing id or times, or roles in data, is 422", func(t *testing.T, w *world) {
			for _, f := range []string{"id", "created_at", "updated_at", "expires_at", "admin", "roles"} {
				r := w.n.call(t, "POST", recs, w.n.admin, `{"owner":"o","data":{"name":"x"},"`+f+`":"`+marker+`"}`)
				wantProblem(t, r, 422, `unknown field "`+f+`"`)
			}
			r := w.n.call(t, "POST", recs, w.tokenA, `{"owner":"`+w.clientA+`","data":{"name":"x","roles":["admin"]}}`)
			wantProblems(t, r, `field "roles" is not in the schema of collection "customers"`, `field "roles" is not in the schema of collection "customers"`)
		}},
		{"POST /v1/clients", "a clerk creates a client with a role it lacks: 403", func(t *testing.T, w *world) {
			n := w.n
			for _, roles := range []string{`["admin"]`, `["customer"]`, `["clerk","admin"]`, `["support"]`} {
				r := n.call(t, "POST", "/v1/clients", w.tokenClerk, `{"name":"minted","roles":`+roles+`}`)
				wantProblem(t, r, 403, "granting a role you do not hold needs admin on clients")
			}
			for _, f := range []string{"client_id", "client_secret", "created_at", "disabled", "is_admin"} {
				r := n.call(t, "POST", "/v1/clients", w.tokenClerk, `{"name":"minted","`+f+`":"`+marker+`"}`)
				wantProblem(t, r, 422, `unknown field "`+f+`"`)
			}
			wantProblem(t, n.call(t, "POST", "/v1/clients", w.tokenA, `{"name":"minted"}`), 403, "not allowed to create clients")
			// The clerk may hand out the role it holds: the 403s are the roles.
			var made struct {
				ClientID string   `json:"client_id"`
				Roles    []string `json:"roles"`
			}
			n.must(t, 201, "POST", "/v1/clients", w.tokenClerk, `{"name":"minted","roles":["clerk"]}`, &made)
			if !reflect.DeepEqual(made.Roles, []string{"clerk"}) {
				t.Errorf("clerk-made client has roles %v", made.Roles)
			}
			n.must(t, 204, "DELETE", "/v1/clients/"+made.ClientID, n.admin, nil, nil)
		}},
		{"POST /v1/users", "a clerk creates an admin user: 403; choosing id or MFA is 422", func(t *testing.T, w *world) {
			n := w.n
			r := n.call(t, "POST", "/v1/users", w.tokenClerk, `{"username":"minted","password":"`+alicePassword+`","roles":["admin"]}`)
			wantProblem(t, r, 403, "not allowed to create users")
			for _, f := range []string{"id", "mfa", "totp_secret", "password_hash"} {
				r := n.call(t, "POST", "/v1/users", n.admin, `{"username":"minted","password":"`+alicePassword+`","`+f+`":"`+marker+`"}`)
				wantProblem(t, r, 422, `unknown field "`+f+`"`)
			}
		}},
		{"POST /v1/tokenize", "choosing the token is 422", func(t *testing.T, w *world) {
			r := w.n.call(t, "POST", "/v1/tokenize", w.n.admin, `{"items":[{"value":"x","type":"string","token":"tok_str_`+marker+`"}]}`)
			wantProblem(t, r, 422, `unknown field "token"`)
			r = w.n.call(t, "POST", "/v1/tokenize", w.n.admin, `{"items":[{"value":"x","type":"string"}],"admin":true}`)
			wantProblem(t, r, 422, `unknown field "admin"`)
		}},
		{"POST /v1/keys", "making a key exportable or choosing its versions is 422", func(t *testing.T, w *world) {
			for _, f := range []string{`"exportable":true`, `"latest_version":9`, `"min_decryption_version":1`} {
				r := w.n.call(t, "POST", "/v1/keys", w.n.admin, `{"name":"minted",`+f+`}`)
				wantProblem(t, r, 422, `unknown field "`+string(bytes.SplitN([]byte(f), []byte(`"`), 3)[1])+`"`)
			}
		}},
		{"POST /v1/keys/{name}/import", "making an imported key exportable or choosing its version is 422", func(t *testing.T, w *world) {
			for _, f := range []string{`"exportable":true`, `"version":9`, `"deletable":true`} {
				r := w.n.call(t, "POST", "/v1/keys/minted/import", w.n.admin, `{"ciphertext":"AAAA",`+f+`}`)
				wantProblem(t, r, 422, `unknown field "`+string(bytes.SplitN([]byte(f), []byte(`"`), 3)[1])+`"`)
			}
		}},
		{"POST /v1/collections", "choosing created_at is 422", func(t *testing.T, w *world) {
			r := w.n.call(t, "POST", "/v1/collections", w.n.admin, `{"name":"minted","fields":[{"name":"a","type":"string"}],"created_at":"2000-01-01T00:00:00Z"}`)
			wantProblem(t, r, 422, `unknown field "created_at"`)
		}},
	}
}
