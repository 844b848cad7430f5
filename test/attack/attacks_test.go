package attack

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// attack is one case of the table: an attack on one route of the server,
// run against a planted world.
type attack struct {
	route string // the pattern as Server.Routes lists it
	name  string
	run   func(t *testing.T, w *world)
}

// attacks is the whole table. Every route of the server must appear in it
// (TestEveryRouteIsAttacked).
func attacks() []attack {
	var all []attack
	for _, group := range [][]attack{
		authAttacks(), sqlAttacks(), idorAttacks(), massAssignmentAttacks(), bodyAttacks(), publicAttacks(),
		batchAttacks(), mfaAdminAttacks(), vaultAttacks(), escalationAttacks(), policyLockoutAttacks(),
		principalChangeAttacks(), vaultImportAttacks(), idempotencyAttacks(), listingAttacks(),
	} {
		all = append(all, group...)
	}
	return all
}

// TestAttacks runs the table against one planted world per backend, then
// checks that nothing planted changed and that the log echoes no payload.
func TestAttacks(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		w := plantWorld(t, n)
		before := w.snapshot(t)
		for _, a := range attacks() {
			t.Run(a.route+"/"+a.name, func(t *testing.T) { a.run(t, w) })
		}
		w.unchanged(t, before)
		noEchoInLog(t, n)
	})
}

// TestEveryRouteIsAttacked fails when the server serves a route that no
// case of the table attacks, and when the table names a route the server
// does not serve.
func TestEveryRouteIsAttacked(t *testing.T) {
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, setup{})
	coverage := map[string][]string{} // route pattern → attack cases
	for _, a := range attacks() {
		coverage[a.route] = append(coverage[a.route], a.name)
	}
	routes := n.Srv.Routes()
	if len(routes) == 0 {
		t.Fatal("the server lists no routes")
	}
	for _, r := range routes {
		if len(coverage[r]) == 0 {
			t.Errorf("route %q has no attack case: add one to the table in test/attack", r)
		}
	}
	var stale []string
	for r := range coverage {
		if !slices.Contains(routes, r) {
			stale = append(stale, r)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("the table attacks routes the server does not serve: %s", strings.Join(stale, ", "))
	}
	for _, r := range routes {
		t.Logf("%-48s %d cases", r, len(coverage[r]))
	}
}

// sample is a concrete request for a route pattern.
type sample struct {
	route, method, path string
}

// protected lists every route that needs a bearer token, with a path that
// names planted things, so a refusal is not just a 404.
func protected(w *world) []sample {
	rec := "/v1/collections/customers/records/" + w.recA
	s := []sample{
		{"POST /v1/oauth/introspect", "POST", "/v1/oauth/introspect"},
		{"POST /v1/auth/mfa/totp", "POST", "/v1/auth/mfa/totp"},
		{"POST /v1/auth/mfa/totp/confirm", "POST", "/v1/auth/mfa/totp/confirm"},
		{"POST /v1/clients", "POST", "/v1/clients"},
		{"GET /v1/clients", "GET", "/v1/clients"},
		{"PATCH /v1/clients/{id}", "PATCH", "/v1/clients/" + w.clientA},
		{"DELETE /v1/clients/{id}", "DELETE", "/v1/clients/" + w.clientA},
		{"POST /v1/clients/{id}/rotate", "POST", "/v1/clients/" + w.clientA + "/rotate"},
		{"POST /v1/users", "POST", "/v1/users"},
		{"GET /v1/users", "GET", "/v1/users"},
		{"GET /v1/admin/jobs", "GET", "/v1/admin/jobs"},
		{"PATCH /v1/users/{id}", "PATCH", "/v1/users/" + w.aliceID},
		{"DELETE /v1/users/{id}", "DELETE", "/v1/users/" + w.aliceID},
		{"POST /v1/users/{id}/mfa/enrolment-code", "POST", "/v1/users/" + w.aliceID + "/mfa/enrolment-code"},
		{"DELETE /v1/users/{id}/mfa", "DELETE", "/v1/users/" + w.aliceID + "/mfa"},
		{"POST /v1/policy/check", "POST", "/v1/policy/check"},
		{"GET /v1/policy", "GET", "/v1/policy"},
		{"PUT /v1/policy", "PUT", "/v1/policy"},
		{"POST /v1/collections", "POST", "/v1/collections"},
		{"GET /v1/collections", "GET", "/v1/collections"},
		{"GET /v1/collections/{c}", "GET", "/v1/collections/customers"},
		{"POST /v1/collections/{c}/records", "POST", "/v1/collections/customers/records"},
		{"GET /v1/collections/{c}/records/{id}", "GET", rec},
		{"PATCH /v1/collections/{c}/records/{id}", "PATCH", rec},
		{"DELETE /v1/collections/{c}/records/{id}", "DELETE", rec},
		{"POST /v1/collections/{c}/records/search", "POST", "/v1/collections/customers/records/search"},
		{"DELETE /v1/subjects/{subject}", "DELETE", "/v1/subjects/subject-a"},
		{"POST /v1/tokenize", "POST", "/v1/tokenize"},
		{"POST /v1/detokenize", "POST", "/v1/detokenize"},
		{"POST /v1/inspect", "POST", "/v1/inspect"},
		{"POST /v1/redact", "POST", "/v1/redact"},
		{"POST /v1/keys", "POST", "/v1/keys"},
		{"GET /v1/keys/wrapping_key", "GET", "/v1/keys/wrapping_key"},
		{"GET /v1/keys/{name}", "GET", "/v1/keys/k1"},
		{"DELETE /v1/keys/{name}", "DELETE", "/v1/keys/k1"},
		{"POST /v1/keys/{name}/config", "POST", "/v1/keys/k1/config"},
		{"POST /v1/keys/{name}/rotate", "POST", "/v1/keys/k1/rotate"},
		{"POST /v1/keys/{name}/import", "POST", "/v1/keys/imported/import"},
		{"POST /v1/keys/{name}/import_version", "POST", "/v1/keys/k1/import_version"},
		{"POST /v1/keys/{name}/import_vault", "POST", "/v1/keys/vault-imported/import_vault"},
		{"POST /v1/keys/{name}/encrypt", "POST", "/v1/keys/k1/encrypt"},
		{"POST /v1/keys/{name}/decrypt", "POST", "/v1/keys/k1/decrypt"},
		{"POST /v1/keys/{name}/rewrap", "POST", "/v1/keys/k1/rewrap"},
		{"POST /v1/admin/keys/rotate", "POST", "/v1/admin/keys/rotate"},
		{"POST /v1/admin/keys/retire", "POST", "/v1/admin/keys/retire"},
		{"POST /v1/admin/keys/unretire", "POST", "/v1/admin/keys/unretire"},
		{"POST /v1/admin/keys/destroy", "POST", "/v1/admin/keys/destroy"},
		{"POST /v1/admin/keys/revoke-signing", "POST", "/v1/admin/keys/revoke-signing"},
		{"GET /v1/audit/events", "GET", "/v1/audit/events"},
		{"POST /v1/audit/verify", "POST", "/v1/audit/verify"},
		{"POST /v1/admin/audit/archive", "POST", "/v1/admin/audit/archive"},
		{"GET /v1/security/events", "GET", "/v1/security/events"},
		{"DELETE /v1/security/suspensions/{principal}", "DELETE", "/v1/security/suspensions/" + w.clientA},
		{"PUT /v1/security/suspensions/{principal}", "PUT", "/v1/security/suspensions/" + w.clientA},
		{"GET /v1/security/suspensions", "GET", "/v1/security/suspensions"},
		{"GET /v1/sys/nodes", "GET", "/v1/sys/nodes"},
	}
	return s
}

// protectedRoutes are the patterns of protected, for building the table
// before a world exists.
var protectedRoutes = func() []string {
	var out []string
	for _, s := range protected(&world{}) {
		out = append(out, s.route)
	}
	return out
}()

// authAttacks send every protected route no token, garbage and forged
// tokens: each is the same 401 with a Bearer challenge, and the admin
// action behind it never happens.
func authAttacks() []attack {
	var out []attack
	for _, route := range protectedRoutes {
		out = append(out, attack{route, "no token, garbage and forged tokens are 401", func(t *testing.T, w *world) {
			var s sample
			for _, x := range protected(w) {
				if x.route == route {
					s = x
				}
			}
			body := []byte(`{"name":"` + marker + `"}`)
			missing := []string{"", "Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "garbage", "Token " + w.n.admin,
				"Bearer" + w.n.admin}
			for _, a := range missing {
				r := w.n.send(t, req{method: s.method, path: s.path, contentType: "application/json", body: body,
					header: map[string]string{"Authorization": a}})
				wantProblem(t, r, 401, "a bearer access token is required")
			}
			for name, tok := range w.forgeries(t) {
				r := w.n.call(t, s.method, s.path, tok, body)
				t.Run(name, func(t *testing.T) { want401(t, r) })
			}
		}})
	}
	return out
}
