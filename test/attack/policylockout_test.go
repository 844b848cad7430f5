package attack

import (
	"testing"
)

// Class: policy self-lockout. A policy document under which no principal
// (the caller, or any client or user not disabled) could change the
// policy again is refused with 422 policy-lockout, however the right is
// lost: no rule for it, a rule for a role nobody holds, a condition no
// principal meets, a require_mfa no principal can satisfy, a pattern that
// looks like it matches and does not. The old policy stays in force
// (the world's snapshot checks it); only force=true, or the offline
// break-glass, puts such a document in force (#14.6). A caller without
// update on policy learns nothing of the check (403 first).

const lockoutDetail = "under this policy no principal could change the policy again; the old policy stays in force " +
	"(fix the document, or put it with force=true if this is meant; `coffer policy apply --data-dir DIR FILE` is the offline way back)"

func policyLockoutAttacks() []attack {
	return []attack{
		{"PUT /v1/policy", "documents that lock every administrator out are 422 policy-lockout, old policy kept", func(t *testing.T, w *world) {
			n := w.n
			for _, tc := range []struct{ doc, problem string }{
				{`{"roles":{"customer":[{"resources":["*"],"actions":["read","create","delete","admin"]}]}}`,
					"no role grants update on policy"},
				{`{"roles":{"admin":[{"resources":["collections/*","clients","users","keys/*"],"actions":["*"]}]}}`,
					"no role grants update on policy"},
				{`{"roles":{"admin":[{"resources":["keys/policy"],"actions":["*"]}],"x":[{"resources":["collections/policy*"],"actions":["update"]}]}}`,
					"no role grants update on policy"},
				{`{"roles":{"root":[{"resources":["*"],"actions":["*"]}]}}`,
					"update on policy is granted only to roles [root], which neither the caller nor any client or user that is not disabled holds (or their conditions are false for them)"},
				{`{"roles":{"admin":[{"resources":["*"],"actions":["*"],"when":"principal.attributes[\"team\"] == \"nobody\""}]}}`,
					"update on policy is granted only to roles [admin], which neither the caller nor any client or user that is not disabled holds (or their conditions are false for them)"},
				{`{"roles":{"admin":[{"resources":["*"],"actions":["*"],"when":"request.time < timestamp(\"2000-01-01T00:00:00Z\")"}]}}`,
					"update on policy is granted only to roles [admin], which neither the caller nor any client or user that is not disabled holds (or their conditions are false for them)"},
				{`{"roles":{"admin":{"require_mfa":true,"rules":[{"resources":["*"],"actions":["*"]}]}}}`,
					"update on policy is granted only to roles [admin], which neither the caller nor any client or user that is not disabled holds (or their conditions are false for them)"},
			} {
				r := n.send(t, req{method: "PUT", path: "/v1/policy", token: n.admin, contentType: "application/json", body: []byte(tc.doc)})
				p := wantTypedProblem(t, r, 422, "policy-lockout", lockoutDetail)
				if len(p.Problems) != 1 || p.Problems[0] != tc.problem {
					t.Errorf("%s: problems %q, want %q", tc.doc, p.Problems, tc.problem)
				}
			}
			for _, force := range []string{"1", "yes", "TRUE", "true&force=false", ""} {
				r := n.send(t, req{method: "PUT", path: "/v1/policy?force=" + force, token: n.admin, contentType: "application/json",
					body: []byte(`{"roles":{"customer":[{"resources":["*"],"actions":["read"]}]}}`)})
				wantProblem(t, r, 422, "force must be true or false")
			}
			// Someone without update on policy gets the same 403 for a
			// lockout as for any document, forced or not.
			for _, path := range []string{"/v1/policy", "/v1/policy?force=true"} {
				r := n.send(t, req{method: "PUT", path: path, token: w.tokenManager, contentType: "application/json",
					body: []byte(`{"roles":{"customer":[{"resources":["*"],"actions":["read"]}]}}`)})
				wantProblem(t, r, 403, "not allowed to update policy")
			}
		}},
	}
}
