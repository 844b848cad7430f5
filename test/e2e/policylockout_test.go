package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
)

// putPolicy PUTs a YAML document with the admin client's fresh token and
// returns the status and body.
func (n *node) putPolicy(doc, query string) (int, string) {
	n.t.Helper()
	st, _, b := n.do("PUT", "/v1/policy"+query, n.Token(n.Init.ClientID, n.Init.ClientSecret), "application/yaml", strings.NewReader(doc))
	return st, string(b)
}

// TestPolicySelfLockout: PUT /v1/policy refuses (422 policy-lockout,
// naming the problem) a document under which no principal could change
// the policy again, and keeps the old one; a document some other existing
// principal could still change is accepted; force=true puts a lockout in
// force, and the offline break-glass `coffer policy apply` is then the way
// back, audited on the offline chain (#14.6).
func TestPolicySelfLockout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		const before = "roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n  reader:\n    - resources: [\"collections/*\"]\n      actions: [read]\n"
		if st, b := n.putPolicy(before, ""); st != 204 {
			t.Fatalf("put: %d %s", st, b)
		}
		for _, tc := range []struct{ name, doc, problem string }{
			{"no role grants it", "roles:\n  reader:\n    - resources: [\"*\"]\n      actions: [read, create, admin]\n", "no role grants update on policy"},
			{"a role nobody holds", "roles:\n  ops:\n    - resources: [\"policy\"]\n      actions: [update]\n  admin:\n    - resources: [\"collections/*\"]\n      actions: [\"*\"]\n",
				"update on policy is granted only to roles [ops]"},
			{"a condition false for everyone", "roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n      when: request.ip == \"192.0.2.1\"\n",
				"update on policy is granted only to roles [admin]"},
			{"MFA nobody has", "roles:\n  admin:\n    require_mfa: true\n    rules:\n      - resources: [\"*\"]\n        actions: [\"*\"]\n",
				"update on policy is granted only to roles [admin]"},
		} {
			st, b := n.putPolicy(tc.doc, "")
			var p struct {
				Type     string   `json:"type"`
				Detail   string   `json:"detail"`
				Problems []string `json:"problems"`
			}
			mustJSON(t, []byte(b), &p)
			if st != 422 || p.Type != "https://coffer.dev/problems/policy-lockout" || len(p.Problems) != 1 ||
				!strings.HasPrefix(p.Problems[0], tc.problem) || !strings.Contains(p.Detail, "force=true") {
				t.Fatalf("%s: %d %s", tc.name, st, b)
			}
		}
		if doc, err := n.Admin.GetPolicy(ctx); err != nil || string(doc) != before {
			t.Fatalf("the policy after refusals: %q %v", doc, err)
		}
		if st, b := n.putPolicy(before, "?force=maybe"); st != 422 || !strings.Contains(b, "force must be true or false") {
			t.Fatalf("force=maybe: %d %s", st, b)
		}

		// Another principal keeps the right: the caller may give up its own.
		n.newUser("keeper", "policyadmin")
		handover := "roles:\n  policyadmin:\n    - resources: [\"policy\"]\n      actions: [read, update]\n  admin:\n    - resources: [\"collections/*\", \"clients\", \"users\"]\n      actions: [\"*\"]\n"
		if st, b := n.putPolicy(handover, ""); st != 204 {
			t.Fatalf("hand-over to an existing user: %d %s", st, b)
		}
		_, _, tr := n.login("keeper", userPassword)
		if st, _, b := n.do("PUT", "/v1/policy", tr.AccessToken, "application/yaml", strings.NewReader(before)); st != 204 {
			t.Fatalf("the keeper puts the admin back: %d %s", st, b)
		}

		// Forced: nobody may change the policy any more.
		lockout := "roles:\n  reader:\n    - resources: [\"collections/*\"]\n      actions: [read]\n"
		if st, b := n.putPolicy(lockout, "?force=true"); st != 204 {
			t.Fatalf("forced lockout: %d %s", st, b)
		}
		if st, b := n.putPolicy(before, ""); st != 403 {
			t.Fatalf("the admin after the lockout: %d %s", st, b)
		}

		// Break-glass, offline, beside the serving node.
		cfg, err := config.Load(n.Dir, n.Env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := app.ApplyPolicy(ctx, cfg, []byte(lockout), "yaml", false); err == nil || !strings.Contains(err.Error(), "no principal could change the policy") {
			t.Fatalf("offline apply of a lockout without force: %v", err)
		}
		if _, err := app.ApplyPolicy(ctx, cfg, []byte("roles: ["), "yaml", false); err == nil {
			t.Fatal("offline apply of a broken document")
		}
		v, err := app.ApplyPolicy(ctx, cfg, []byte(before), "yaml", false)
		if err != nil || v == 0 {
			t.Fatalf("offline apply: %d %v", v, err)
		}
		got, err := app.GetPolicy(ctx, cfg)
		if err != nil || string(got.Data) != before || got.Version != v || got.Format != "yaml" {
			t.Fatalf("offline get: %+v %v", got, err)
		}
		// The serving node loads it (it polls the store).
		deadline := time.Now().Add(time.Minute)
		for {
			st, b := n.putPolicy(before, "")
			if st == 204 {
				break
			}
			if st != 403 || time.Now().After(deadline) {
				t.Fatalf("the admin after the break-glass: %d %s", st, b)
			}
			time.Sleep(200 * time.Millisecond)
		}

		// Each offline run is on the offline chain, before and after.
		st, _, b := n.do("GET", "/v1/audit/events?limit=1000", n.Token(n.Init.ClientID, n.Init.ClientSecret), "", nil)
		if st != 200 {
			t.Fatalf("audit: %d %s", st, b)
		}
		var evs struct {
			Events []struct {
				Action, Resource, Reason, Decision string
			} `json:"events"`
		}
		mustJSON(t, b, &evs)
		var offline []string
		for _, e := range evs.Events {
			if strings.HasPrefix(e.Action, "policy.") {
				offline = append(offline, e.Action+" "+strings.SplitN(e.Reason, ":", 2)[0])
			}
		}
		want := []string{"policy.apply started", "policy.apply invalid", "policy.apply started", "policy.apply invalid",
			"policy.apply started", "policy.apply done", "policy.get started", "policy.get done"}
		if !sameSet(offline, want) {
			raw, _ := json.Marshal(offline)
			t.Fatalf("offline policy events: %s, want %q", raw, want)
		}
	})
}

// sameSet reports whether a and b hold the same strings as often, in any
// order (the events API may list newest first).
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for _, c := range count {
		if c != 0 {
			return false
		}
	}
	return true
}
