package attack

import (
	"strings"
	"testing"
)

// listingAttacks: the users list and the background jobs' progress are
// told only to a principal the policy grants read on users or on
// system/jobs; the users list never holds a password hash, a TOTP secret,
// a recovery code or a password (#21).
func listingAttacks() []attack {
	return []attack{
		{"GET /v1/users", "customers, support and a clerk list no user: 403; the list holds no secret", func(t *testing.T, w *world) {
			for _, tok := range []string{w.tokenA, w.tokenSupport, w.tokenClerk} {
				wantProblem(t, w.n.call(t, "GET", "/v1/users", tok, nil), 403, "not allowed to read users")
			}
			for _, tok := range []string{w.n.admin, w.tokenManager} {
				r := w.n.call(t, "GET", "/v1/users", tok, nil)
				if r.status != 200 || !strings.Contains(string(r.body), w.aliceID) {
					t.Fatalf("GET /v1/users: %d %s", r.status, r.body)
				}
				low := strings.ToLower(string(r.body))
				for _, s := range []string{"argon2", "hash", "secret", "recovery", strings.ToLower(alicePassword)} {
					if strings.Contains(low, s) {
						t.Errorf("the users list holds %q", s)
					}
				}
			}
		}},
		{"GET /v1/admin/jobs", "a principal without read on system/jobs learns nothing of the jobs: 403", func(t *testing.T, w *world) {
			for _, tok := range []string{w.tokenA, w.tokenSupport, w.tokenClerk, w.tokenManager} {
				wantProblem(t, w.n.call(t, "GET", "/v1/admin/jobs", tok, nil), 403, "not allowed to read system/jobs")
			}
			if r := w.n.call(t, "GET", "/v1/admin/jobs", w.n.admin, nil); r.status != 200 || !strings.Contains(string(r.body), `"rewrap"`) {
				t.Fatalf("GET /v1/admin/jobs as admin: %d %s", r.status, r.body)
			}
		}},
		{"POST /v1/admin/audit/archive", "a principal without admin on audit cannot archive or prune the audit log: 403, before the body is read", func(t *testing.T, w *world) {
			for _, tok := range []string{w.tokenA, w.tokenSupport, w.tokenClerk, w.tokenManager} {
				wantProblem(t, w.n.call(t, "POST", "/v1/admin/audit/archive", tok, map[string]string{"before": "0s"}), 403, "not allowed to admin audit")
				wantProblem(t, w.n.call(t, "POST", "/v1/admin/audit/archive", tok, "not an object"), 403, "not allowed to admin audit")
			}
			// Without audit.archive an admin is told so, and nothing is pruned.
			wantProblem(t, w.n.call(t, "POST", "/v1/admin/audit/archive", w.n.admin, map[string]string{}), 409, "audit.archive is not configured")
			wantProblem(t, w.n.call(t, "POST", "/v1/admin/audit/archive", w.n.admin, map[string]string{"before": "-1h"}), 422, "before must be a non-negative Go duration")
		}},
	}
}
