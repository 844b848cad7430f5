package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/testserver"
)

// TestAuditIntervalDurabilityServesAndAudits: with the opt-in
// audit.durability interval a node answers, and each answered request's
// event is in the log within the flush interval, on both backends.
func TestAuditIntervalDurabilityServesAndAudits(t *testing.T) {
	o := testserver.Options{Env: []string{"COFFER_AUDIT_DURABILITY=interval", "COFFER_AUDIT_FLUSH_INTERVAL=20ms"}}
	testserver.ForEachBackend(t, o, func(t *testing.T, s *testserver.Server) {
		n := &node{Server: s, t: t}
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		if st, _, body := n.postJSON("/v1/keys", tok, map[string]any{"name": "ivl"}); st != 201 {
			t.Fatalf("create key: %d %s", st, body)
		}
		for range 20 {
			if st, _, body := n.postJSON("/v1/keys/ivl/encrypt", tok, map[string]any{"plaintext": "eA=="}); st != 200 {
				t.Fatalf("encrypt: %d %s", st, body)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, _, b := n.do("GET", "/v1/audit/events?limit=1000", tok, "", nil)
			if st != 200 {
				t.Fatalf("audit events: %d %s", st, b)
			}
			if c := strings.Count(string(b), `"resource":"keys/ivl"`); c >= 21 { // the creation and 20 encryptions
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the 20 answered encryptions are not all in the audit log 10 s later: %s", b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
