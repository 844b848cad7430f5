package attack

import (
	"testing"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestBruteForceLockout: guessing client secrets from one address ends in
// 429 with Retry-After, and the locked address cannot get a token even
// with the right secret; another address still can.
func TestBruteForceLockout(t *testing.T) {
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, setup{settings: map[string]string{"auth.lockout.max_failures": "5"}})
	attacker := n.From(n.freshIP())
	guess := func(secret string) reply {
		return n.send(t, req{method: "POST", path: "/v1/oauth/token", contentType: "application/x-www-form-urlencoded",
			body: []byte("grant_type=client_credentials&client_id=" + n.Init.ClientID + "&client_secret=" + secret), via: attacker})
	}
	locked := false
	for i := 0; i < 10 && !locked; i++ {
		r := guess("cs_wrong" + marker)
		switch r.status {
		case 401:
			wantOAuth(t, r, 401, "invalid_client", "client authentication failed")
		case 429:
			wantOAuth(t, r, 429, "invalid_client", "too many failed attempts; try again later")
			if r.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			locked = true
		default:
			t.Fatalf("guess %d: %s", i, r)
		}
	}
	if !locked {
		t.Fatal("10 wrong secrets from one address and no lockout")
	}
	if r := guess(n.Init.ClientSecret); r.status != 429 {
		t.Errorf("the right secret from the locked address: %s", r)
	}
	noEchoInLog(t, n)

	// The auth.lockout settings themselves: test/e2e TestLockoutSettings.
}
