package attack

import (
	"testing"
)

// Class: self-escalation. A principal that may manage clients or users
// (create, update, delete, but no admin) never gains what it could not
// grant: it cannot take over, disable, delete, re-role or reset the MFA of
// a principal holding roles or attributes it lacks (the admin client, a
// customer, the support user), cannot give a role or an attribute
// (key=value) it does not hold itself, to a new principal, to another
// or to itself, and whatever it tries, nothing planted changes (#15.3,
// #15.4). Roles and attributes are granted by one rule (httpapi grants.go).

const (
	// heldDenied is the refusal of an operation on a principal that holds
	// more than the caller may grant.
	heldDenied = "the client holds roles or attributes you do not: acting on it needs admin on clients"
	userDenied = "the user holds roles or attributes you do not: acting on it needs admin on users"
)

func escalationAttacks() []attack {
	return []attack{
		{"POST /v1/clients/{id}/rotate", "a manager rotates the secret of the admin, a clerk or a customer: 403", func(t *testing.T, w *world) {
			for _, id := range []string{w.n.Init.ClientID, w.clerkID, w.clientA} {
				wantProblem(t, w.n.call(t, "POST", "/v1/clients/"+id+"/rotate", w.tokenManager, nil), 403, heldDenied)
			}
		}},
		{"PATCH /v1/clients/{id}", "a manager renames, disables, re-roles or re-attributes a stronger client: 403", func(t *testing.T, w *world) {
			n := w.n
			for _, id := range []string{n.Init.ClientID, w.clerkID, w.clientA} {
				for _, body := range []string{`{"name":"` + marker + `"}`, `{"disabled":true}`, `{"roles":[]}`,
					`{"roles":["manager"]}`, `{"attributes":{"team":"ops"}}`} {
					wantProblem(t, n.call(t, "PATCH", "/v1/clients/"+id, w.tokenManager, body), 403, heldDenied)
				}
			}
		}},
		{"PATCH /v1/clients/{id}", "a manager gives itself a role or an attribute it lacks: 403", func(t *testing.T, w *world) {
			n := w.n
			self := "/v1/clients/" + w.managerID
			for _, body := range []string{`{"roles":["manager","admin"]}`, `{"roles":["clerk"]}`} {
				wantProblem(t, n.call(t, "PATCH", self, w.tokenManager, body), 403, "granting a role you do not hold needs admin on clients")
			}
			for _, body := range []string{`{"attributes":{"team":"hr"}}`, `{"attributes":{"team":"ops","clearance":"top"}}`} {
				wantProblem(t, n.call(t, "PATCH", self, w.tokenManager, body), 403, "granting an attribute you do not hold needs admin on clients")
			}
		}},
		{"PATCH /v1/clients/{id}", "no update right, unknown, injected ids and fields", func(t *testing.T, w *world) {
			n := w.n
			for _, tok := range []string{w.tokenClerk, w.tokenA, w.tokenSupport} {
				wantProblem(t, n.call(t, "PATCH", "/v1/clients/"+w.clientB, tok, `{"name":"x"}`), 403, "not allowed to update clients")
			}
			forEachPayload(t, func(t *testing.T, p string) {
				wantProblem(t, n.call(t, "PATCH", "/v1/clients/"+esc(p), n.admin, `{"name":"x"}`), 404, "client not found")
			})
			for _, f := range []string{"client_id", "client_secret", "secret_hash", "created_at", "id"} {
				wantProblem(t, n.call(t, "PATCH", "/v1/clients/"+w.clientB, n.admin, `{"`+f+`":"`+marker+`"}`), 422, `unknown field "`+f+`"`)
			}
			wantProblem(t, n.call(t, "PATCH", "/v1/clients/"+w.clientB, n.admin, `{"roles":["ADMIN!"]}`), 422, "roles must match [a-z0-9_-]{1,64}")
		}},
		{"DELETE /v1/clients/{id}", "a manager deletes a stronger client: 403", func(t *testing.T, w *world) {
			for _, id := range []string{w.n.Init.ClientID, w.clerkID, w.clientA} {
				wantProblem(t, w.n.call(t, "DELETE", "/v1/clients/"+id, w.tokenManager, nil), 403, heldDenied)
			}
		}},
		{"POST /v1/clients", "a manager creates a client with an attribute it lacks: 403; with its own: 201", func(t *testing.T, w *world) {
			n := w.n
			for _, attrs := range []string{`{"team":"hr"}`, `{"clearance":"top"}`, `{"team":"ops","x":"y"}`} {
				r := n.call(t, "POST", "/v1/clients", w.tokenManager, `{"name":"minted","attributes":`+attrs+`}`)
				wantProblem(t, r, 403, "granting an attribute you do not hold needs admin on clients")
			}
			var made struct {
				ClientID string `json:"client_id"`
			}
			n.must(t, 201, "POST", "/v1/clients", w.tokenManager, `{"name":"minted","roles":["manager"],"attributes":{"team":"ops"}}`, &made)
			// What it could create, it may act on.
			n.must(t, 200, "POST", "/v1/clients/"+made.ClientID+"/rotate", w.tokenManager, nil, nil)
			n.must(t, 200, "PATCH", "/v1/clients/"+made.ClientID, w.tokenManager, `{"disabled":true,"attributes":{}}`, nil)
			n.must(t, 204, "DELETE", "/v1/clients/"+made.ClientID, w.tokenManager, nil, nil)
		}},
		{"POST /v1/users", "a manager creates a user with a role or an attribute it lacks: 403", func(t *testing.T, w *world) {
			n := w.n
			r := n.call(t, "POST", "/v1/users", w.tokenManager, `{"username":"minted","password":"`+alicePassword+`","roles":["support"]}`)
			wantProblem(t, r, 403, "granting a role you do not hold needs admin on users")
			r = n.call(t, "POST", "/v1/users", w.tokenManager, `{"username":"minted","password":"`+alicePassword+`","attributes":{"team":"hr"}}`)
			wantProblem(t, r, 403, "granting an attribute you do not hold needs admin on users")
		}},
		{"PATCH /v1/users/{id}", "a manager disables, re-roles or re-attributes a stronger user: 403", func(t *testing.T, w *world) {
			n := w.n
			for _, body := range []string{`{"disabled":true}`, `{"roles":[]}`, `{"roles":["manager"]}`, `{"attributes":{"team":"ops"}}`} {
				wantProblem(t, n.call(t, "PATCH", "/v1/users/"+w.aliceID, w.tokenManager, body), 403, userDenied)
			}
			for _, tok := range []string{w.tokenClerk, w.tokenA, w.tokenSupport} {
				wantProblem(t, n.call(t, "PATCH", "/v1/users/"+w.aliceID, tok, `{"disabled":true}`), 403, "not allowed to update users")
			}
			forEachPayload(t, func(t *testing.T, p string) {
				wantProblem(t, n.call(t, "PATCH", "/v1/users/"+esc(p), n.admin, `{"disabled":true}`), 404, "user not found")
			})
			for _, f := range []string{"id", "username", "password", "password_hash", "mfa_enrolled", "name"} {
				r := n.call(t, "PATCH", "/v1/users/"+w.aliceID, n.admin, `{"`+f+`":"`+marker+`"}`)
				if r.status != 422 {
					t.Errorf("PATCH of %s: %s", f, r)
				}
			}
		}},
		{"DELETE /v1/users/{id}", "a manager deletes a stronger user: 403; no right: 403; unknown: 404", func(t *testing.T, w *world) {
			n := w.n
			wantProblem(t, n.call(t, "DELETE", "/v1/users/"+w.aliceID, w.tokenManager, nil), 403, userDenied)
			for _, tok := range []string{w.tokenClerk, w.tokenA, w.tokenSupport} {
				wantProblem(t, n.call(t, "DELETE", "/v1/users/"+w.aliceID, tok, nil), 403, "not allowed to delete users")
			}
			forEachPayload(t, func(t *testing.T, p string) {
				wantProblem(t, n.call(t, "DELETE", "/v1/users/"+esc(p), n.admin, nil), 404, "user not found")
			})
		}},
		{"DELETE /v1/users/{id}/mfa", "a manager resets a stronger user's MFA: 403", func(t *testing.T, w *world) {
			fresh := w.n.call(t, "DELETE", "/v1/users/"+w.aliceID+"/mfa", w.tokenManager, nil)
			wantProblem(t, fresh, 403, userDenied)
		}},
		{"POST /v1/users/{id}/mfa/enrolment-code", "a manager issues a stronger user's enrolment code: 403", func(t *testing.T, w *world) {
			wantProblem(t, w.n.call(t, "POST", "/v1/users/"+w.aliceID+"/mfa/enrolment-code", w.tokenManager, nil), 403, userDenied)
		}},
	}
}
