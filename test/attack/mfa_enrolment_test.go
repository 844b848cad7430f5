package attack

import (
	"testing"
	"time"
)

// Class: MFA enrolment. A role with require_mfa is never gained with a
// password alone: a user whose roles require MFA enrols only with a
// one-time code an admin issued, and only someone who may grant all of a
// user's roles issues that code or resets the user's MFA, with a sign-in
// of the last minutes for the reset (#15.7).

// mfaAdminAttacks attack the MFA administration routes of the table: the
// clerk (clients only) and customer A are refused, unknown and injected
// ids are 404, and nothing planted changes.
func mfaAdminAttacks() []attack {
	var out []attack
	for _, rt := range []struct{ route, method, suffix string }{
		{"POST /v1/users/{id}/mfa/enrolment-code", "POST", "/mfa/enrolment-code"},
		{"DELETE /v1/users/{id}/mfa", "DELETE", "/mfa"},
	} {
		out = append(out, attack{rt.route, "no users right, unknown and injected ids", func(t *testing.T, w *world) {
			n := w.n
			for _, tok := range []string{w.tokenClerk, w.tokenA, w.tokenSupport} {
				wantProblem(t, n.call(t, rt.method, "/v1/users/"+w.aliceID+rt.suffix, tok, nil), 403, "not allowed to update users")
			}
			admin := n.Token(n.Init.ClientID, n.Init.ClientSecret) // fresh: the reset needs a recent sign-in
			for _, id := range []string{"u_unknown", esc("u' OR '1'='1" + marker)} {
				wantProblem(t, n.call(t, rt.method, "/v1/users/"+id+rt.suffix, admin, nil), 404, "user not found")
			}
		}})
	}
	return out
}

// TestRequireMFANotGainedWithPasswordAlone: with only the password of a
// user whose role requires MFA, enrolment is refused, so the role never
// comes into force; the admin's one-time code lets the user enrol once.
func TestRequireMFANotGainedWithPasswordAlone(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		n.must(t, 204, "PUT", "/v1/policy", n.admin, `{"roles":{"admin":[{"resources":["*"],"actions":["*"]}],
			"secadmin":{"require_mfa":true,"rules":[{"resources":["*"],"actions":["*"]}]},
			"helpdesk":[{"resources":["users"],"actions":["update"]}]}}`, nil)
		var sec struct {
			ID string `json:"id"`
		}
		n.must(t, 201, "POST", "/v1/users", n.admin, map[string]any{"username": "sec", "password": alicePassword, "roles": []string{"secadmin"}}, &sec)
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		n.must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"username": "sec", "password": alicePassword}, &tr)
		for _, body := range []string{`{}`, `{"enrolment_code":""}`, `{"enrolment_code":"mfa_` + marker + `"}`} {
			wantProblem(t, n.call(t, "POST", "/v1/auth/mfa/totp", tr.AccessToken, body), 403, map[bool]string{
				true:  "your roles require MFA: enrolment needs a one-time enrolment_code from an admin (POST /v1/users/{id}/mfa/enrolment-code)",
				false: "the enrolment code is wrong, used or expired",
			}[body == `{}` || body == `{"enrolment_code":""}`])
		}
		if r := n.call(t, "GET", "/v1/collections", tr.AccessToken, nil); r.status != 403 {
			t.Fatalf("the require_mfa role with a password-only token: %s", r)
		}

		// A helpdesk with update on users but not the secadmin role may not
		// mint sec's code: it would become sec.
		_, hd := n.newClient(t, "helpdesk", "helpdesk")
		wantProblem(t, n.call(t, "POST", "/v1/users/"+sec.ID+"/mfa/enrolment-code", hd, nil), 403,
			"the user holds roles or attributes you do not: acting on it needs admin on users")

		// Nor may a user holding the secadmin role (not in force without
		// MFA) and the helpdesk role mint its own code with the password
		// alone, nor hand secadmin out.
		var both struct {
			ID string `json:"id"`
		}
		n.must(t, 201, "POST", "/v1/users", n.admin, map[string]any{"username": "both", "password": alicePassword, "roles": []string{"secadmin", "helpdesk"}}, &both)
		var btr struct {
			AccessToken string `json:"access_token"`
		}
		n.must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"username": "both", "password": alicePassword}, &btr)
		wantProblem(t, n.call(t, "POST", "/v1/users/"+both.ID+"/mfa/enrolment-code", btr.AccessToken, nil), 403,
			"the user holds roles or attributes you do not: acting on it needs admin on users")
		wantProblem(t, n.call(t, "PATCH", "/v1/users/"+sec.ID, btr.AccessToken, map[string]any{"disabled": true}), 403,
			"the user holds roles or attributes you do not: acting on it needs admin on users")

		var ec struct {
			Code string `json:"enrolment_code"`
		}
		n.must(t, 201, "POST", "/v1/users/"+sec.ID+"/mfa/enrolment-code", n.admin, nil, &ec)
		n.must(t, 200, "POST", "/v1/auth/mfa/totp", tr.AccessToken, map[string]string{"enrolment_code": ec.Code}, nil)
		wantProblem(t, n.call(t, "POST", "/v1/auth/mfa/totp", tr.AccessToken, map[string]string{"enrolment_code": ec.Code}), 403,
			"the enrolment code is wrong, used or expired")
		noEchoInLog(t, n)
	})
}

// TestMFAResetNeedsFreshSignIn: resetting a user's MFA with a token older
// than auth.reauth_max_age is refused (401); a fresh one is accepted.
func TestMFAResetNeedsFreshSignIn(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		_, _ = mfaUser(t, n, "oscar")
		var u struct {
			ID string `json:"id"`
		}
		n.must(t, 201, "POST", "/v1/users", n.admin, map[string]any{"username": "peggy", "password": alicePassword}, &u)
		old := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		n.Clock.Advance(6 * time.Minute)
		r := n.call(t, "DELETE", "/v1/users/"+u.ID+"/mfa", old, nil)
		wantProblem(t, r, 401, "this operation needs a fresh sign-in: get a new access token (at most 5m0s old) and retry")
		n.must(t, 204, "DELETE", "/v1/users/"+u.ID+"/mfa", n.Token(n.Init.ClientID, n.Init.ClientSecret), nil, nil)
	})
}
