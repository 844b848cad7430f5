package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// grantsPolicy gives managers of clients and users every action on them
// but admin, and an hr role whose rule reads the team attribute.
const grantsPolicy = `roles:
  admin:
    - resources: ["*"]
      actions: ["*"]
  clientmgr:
    - resources: ["clients"]
      actions: [create, read, update, delete]
  usermgr:
    - resources: ["users"]
      actions: [create, update, delete]
  hr:
    - resources: ["collections/hr"]
      actions: [read]
      when: principal.attributes["team"] == "hr"
`

// call sends a JSON request (body nil for none) with a bearer token and
// returns the status and body.
func (n *node) call(method, path, token string, body any) (int, string) {
	n.t.Helper()
	var rd *strings.Reader
	ct := ""
	if body != nil {
		b, _ := json.Marshal(body)
		rd, ct = strings.NewReader(string(b)), "application/json"
	} else {
		rd = strings.NewReader("")
	}
	st, _, b := n.do(method, path, token, ct, rd)
	return st, string(b)
}

// wantStatus fails unless the request answers want.
func (n *node) wantStatus(t *testing.T, want int, method, path, token string, body any) string {
	t.Helper()
	st, b := n.call(method, path, token, body)
	if st != want {
		t.Fatalf("%s %s %v: %d %s (want %d)", method, path, body, st, b, want)
	}
	return b
}

// TestNoTakeoverOfAPrincipal: a manager of clients or users (every right
// on them but admin) cannot act on a principal that holds roles it lacks:
// no secret rotation, update, disable, delete, role change or MFA
// management of the admin client or an admin user (403, nothing changes);
// on a principal it could have created itself it may (#15.3).
func TestNoTakeoverOfAPrincipal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		if err := n.Admin.PutPolicy(context.Background(), []byte(grantsPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		mgrID, mgrSecret := n.newServiceClient("mgr", "clientmgr", "usermgr")
		mgr := n.Token(mgrID, mgrSecret)
		adminClient := "/v1/clients/" + n.Init.ClientID

		const denied = "holds roles or attributes you do not"
		for _, tc := range []struct {
			method, path string
			body         any
		}{
			{"POST", adminClient + "/rotate", nil},
			{"PATCH", adminClient, map[string]any{"name": "renamed"}},
			{"PATCH", adminClient, map[string]any{"disabled": true}},
			{"PATCH", adminClient, map[string]any{"roles": []string{"clientmgr"}}},
			{"DELETE", adminClient, nil},
		} {
			if b := n.wantStatus(t, 403, tc.method, tc.path, mgr, tc.body); !strings.Contains(b, denied) {
				t.Fatalf("%s %s: %s", tc.method, tc.path, b)
			}
		}
		// The admin client is untouched: its secret still works, it is
		// not disabled and keeps its role.
		adm := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		var cl struct {
			Clients []struct {
				ClientID string   `json:"client_id"`
				Name     string   `json:"name"`
				Roles    []string `json:"roles"`
				Disabled bool     `json:"disabled"`
			} `json:"clients"`
		}
		mustJSON(t, []byte(n.wantStatus(t, 200, "GET", "/v1/clients", adm, nil)), &cl)
		for _, c := range cl.Clients {
			if c.ClientID == n.Init.ClientID && (c.Disabled || c.Name == "renamed" || len(c.Roles) != 1 || c.Roles[0] != "admin") {
				t.Fatalf("the admin client changed: %+v", c)
			}
		}

		// A peer it could have created: rotate, update within its own
		// roles, disable, delete. Giving it admin is still refused.
		peerID, _ := n.newServiceClient("peer", "clientmgr")
		peer := "/v1/clients/" + peerID
		n.wantStatus(t, 200, "POST", peer+"/rotate", mgr, nil)
		if b := n.wantStatus(t, 403, "PATCH", peer, mgr, map[string]any{"roles": []string{"clientmgr", "admin"}}); !strings.Contains(b, "granting a role you do not hold needs admin on clients") {
			t.Fatalf("give a peer admin: %s", b)
		}
		b := n.wantStatus(t, 200, "PATCH", peer, mgr, map[string]any{"name": "peer2", "roles": []string{"usermgr"}, "disabled": true})
		if !strings.Contains(b, `"disabled":true`) || !strings.Contains(b, `"usermgr"`) || !strings.Contains(b, `"peer2"`) {
			t.Fatalf("updated peer: %s", b)
		}
		n.wantStatus(t, 204, "DELETE", peer, mgr, nil)
		n.wantStatus(t, 404, "DELETE", peer, mgr, nil)
		n.wantStatus(t, 404, "PATCH", "/v1/clients/c_unknown", mgr, map[string]any{"name": "x"})

		// Users: an admin user is out of the manager's reach.
		admUser := "/v1/users/" + n.newUser("root", "admin")
		for _, tc := range []struct {
			method, path string
			body         any
		}{
			{"PATCH", admUser, map[string]any{"disabled": true}},
			{"PATCH", admUser, map[string]any{"roles": []string{}}},
			{"PATCH", admUser, map[string]any{"attributes": map[string]string{"team": "x"}}},
			{"DELETE", admUser, nil},
			{"DELETE", admUser + "/mfa", nil},
			{"POST", admUser + "/mfa/enrolment-code", nil},
		} {
			if b := n.wantStatus(t, 403, tc.method, tc.path, mgr, tc.body); !strings.Contains(b, denied) {
				t.Fatalf("%s %s: %s", tc.method, tc.path, b)
			}
		}
		if st, _, tr := n.login("root", userPassword); st != 200 || tr.AccessToken == "" {
			t.Fatalf("the admin user after the attempts: %d", st)
		}
		// A user it could have created: disable (sign-in refused), enable,
		// delete.
		plain := "/v1/users/" + n.newUser("plain", "usermgr")
		n.wantStatus(t, 200, "PATCH", plain, mgr, map[string]any{"disabled": true})
		if st, _, _ := n.login("plain", userPassword); st != 401 {
			t.Fatalf("a disabled user signs in: %d", st)
		}
		n.wantStatus(t, 422, "PATCH", plain, mgr, map[string]any{"name": "x"})
		n.wantStatus(t, 200, "PATCH", plain, mgr, map[string]any{"disabled": false})
		n.wantStatus(t, 204, "DELETE", plain, mgr, nil)
		if st, _, _ := n.login("plain", userPassword); st != 401 {
			t.Fatalf("a deleted user signs in: %d", st)
		}

		// Without the operation's own right nothing is read or done.
		roID, roSecret := n.newServiceClient("ro", "hr")
		ro := n.Token(roID, roSecret)
		n.wantStatus(t, 403, "POST", adminClient+"/rotate", ro, nil)
		n.wantStatus(t, 403, "PATCH", "/v1/clients/c_unknown", ro, map[string]any{"name": "x"})
		n.wantStatus(t, 403, "DELETE", "/v1/users/u_unknown", ro, nil)

		// The admin may do all of it.
		n.wantStatus(t, 200, "PATCH", "/v1/clients/"+mgrID, adm, map[string]any{"roles": []string{"clientmgr"}})
	})
}

// TestAttributesAreGrantedLikeRoles: a caller gives only attributes
// (key=value) it holds itself, or with admin on clients or users; so a
// sales manager cannot mint an hr client or user, nor move one into hr,
// nor itself (#15.4).
func TestAttributesAreGrantedLikeRoles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		if err := n.Admin.PutPolicy(ctx, []byte(grantsPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		mc, err := n.Admin.CreateClient(ctx, "sales-mgr", []string{"hr", "clientmgr", "usermgr"}, map[string]string{"team": "sales"})
		if err != nil {
			t.Fatal(err)
		}
		mgr := n.Token(mc.ClientID, mc.ClientSecret)
		const attrDenied = "granting an attribute you do not hold needs admin on "
		b := n.wantStatus(t, 403, "POST", "/v1/clients", mgr, map[string]any{"name": "hr-bot", "roles": []string{"hr"}, "attributes": map[string]string{"team": "hr"}})
		if !strings.Contains(b, attrDenied+"clients") {
			t.Fatalf("client with team=hr: %s", b)
		}
		b = n.wantStatus(t, 403, "POST", "/v1/users", mgr, map[string]any{"username": "hrbob", "password": userPassword, "roles": []string{"hr"}, "attributes": map[string]string{"team": "hr"}})
		if !strings.Contains(b, attrDenied+"users") {
			t.Fatalf("user with team=hr: %s", b)
		}
		// A new attribute key it does not hold is refused too.
		n.wantStatus(t, 403, "POST", "/v1/clients", mgr, map[string]any{"name": "x", "attributes": map[string]string{"clearance": "top"}})
		// Its own attributes it may give.
		var made struct {
			ClientID string `json:"client_id"`
		}
		mustJSON(t, []byte(n.wantStatus(t, 201, "POST", "/v1/clients", mgr, map[string]any{"name": "sales-bot", "roles": []string{"hr"}, "attributes": map[string]string{"team": "sales"}})), &made)
		var user struct {
			ID string `json:"id"`
		}
		mustJSON(t, []byte(n.wantStatus(t, 201, "POST", "/v1/users", mgr, map[string]any{"username": "salesbob", "password": userPassword, "roles": []string{"hr"}, "attributes": map[string]string{"team": "sales"}})), &user)
		// Moving one into hr, or itself, is refused.
		for _, path := range []string{"/v1/clients/" + made.ClientID, "/v1/clients/" + mc.ClientID, "/v1/users/" + user.ID} {
			res := "clients"
			if strings.HasPrefix(path, "/v1/users/") {
				res = "users"
			}
			if b := n.wantStatus(t, 403, "PATCH", path, mgr, map[string]any{"attributes": map[string]string{"team": "hr"}}); !strings.Contains(b, attrDenied+res) {
				t.Fatalf("PATCH %s to team=hr: %s", path, b)
			}
		}
		// The admin (admin on clients and users) may.
		adm := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		n.wantStatus(t, 200, "PATCH", "/v1/clients/"+made.ClientID, adm, map[string]any{"attributes": map[string]string{"team": "hr"}})
		n.wantStatus(t, 201, "POST", "/v1/users", adm, map[string]any{"username": "hrann", "password": userPassword, "attributes": map[string]string{"team": "hr"}})
		// And a client in hr is then out of the sales manager's reach.
		if b := n.wantStatus(t, 403, "POST", "/v1/clients/"+made.ClientID+"/rotate", mgr, nil); !strings.Contains(b, "holds roles or attributes you do not") {
			t.Fatalf("rotate an hr client: %s", b)
		}
	})
}
