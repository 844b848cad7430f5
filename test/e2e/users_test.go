package e2e

import (
	"context"
	"net/url"
	"strings"
	"testing"
)

// TestListUsers: GET /v1/users lists every user as admins see them
// (id, username, roles, MFA, disabled; never a password hash or TOTP
// secret) to a principal the policy grants read on users, and refuses
// (403, audited as a denial by the policy) one it does not, on both
// backends; the Go SDK's ListUsers reads the same list (#21).
func TestListUsers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		if err := n.Admin.PutPolicy(context.Background(), []byte(grantsPolicy+`  reader:
    - resources: ["users"]
      actions: [read]
`), "yaml"); err != nil {
			t.Fatal(err)
		}
		alice := n.newUser("alice", "reader")
		n.newUser("bob", "usermgr")
		admin := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		body := n.wantStatus(t, 200, "GET", "/v1/users", admin, nil)
		var page struct {
			Users []struct {
				ID       string   `json:"id"`
				Username string   `json:"username"`
				Roles    []string `json:"roles"`
				MFA      *bool    `json:"mfa_enrolled"`
				Disabled *bool    `json:"disabled"`
			} `json:"users"`
		}
		mustJSON(t, []byte(body), &page)
		if len(page.Users) != 2 || page.Users[0].Username != "alice" || page.Users[0].ID != alice ||
			page.Users[1].Username != "bob" || page.Users[0].MFA == nil || page.Users[0].Disabled == nil ||
			strings.Join(page.Users[0].Roles, ",") != "reader" {
			t.Fatalf("GET /v1/users: %s", body)
		}
		for _, secret := range []string{"argon2", "password", "totp_secret", userPassword} {
			if strings.Contains(body, secret) {
				t.Errorf("the user list holds %q: %s", secret, body)
			}
		}

		// read on users is what it takes: alice (reader) may, bob
		// (usermgr: create, update, delete) may not.
		_, _, tr := n.login("alice", userPassword)
		n.wantStatus(t, 200, "GET", "/v1/users", tr.AccessToken, nil)
		_, _, tr = n.login("bob", userPassword)
		n.wantStatus(t, 403, "GET", "/v1/users", tr.AccessToken, nil)
		denied := 0
		for _, e := range n.auditEvents(t, url.Values{"action": {"read"}}) {
			if e.Resource == "users" && e.Decision == "deny" {
				denied++
			}
		}
		if denied != 1 {
			t.Errorf("want bob's GET /v1/users in the audit log as one denial on users, got %d", denied)
		}

		us, err := n.Admin.ListUsers(context.Background())
		if err != nil || len(us) != 2 || us[1].Username != "bob" {
			t.Fatalf("client.ListUsers: %+v %v", us, err)
		}
	})
}
