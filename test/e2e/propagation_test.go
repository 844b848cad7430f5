package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// status sends GET path with token and returns the status, 0 when the
// request failed (it is retried).
func (n *node) status(path, token string) int {
	req, err := http.NewRequest("GET", n.URL+path, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := n.HTTP.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitStatus polls each node with token on path until it answers want,
// and returns how long each took from start; it fails after 10 s (a
// bound far above any propagation, not a timing assertion).
func waitStatus(t *testing.T, nodes []*node, token, path string, want int, start time.Time) []time.Duration {
	t.Helper()
	out := make([]time.Duration, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				st := n.status(path, token)
				if st == want {
					out[i] = time.Since(start)
					return
				}
				if time.Since(start) > 10*time.Second {
					t.Errorf("%s still answers %d, not %d, 10 s after the change", n.Addr, st, want)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// TestChangesReachEveryNode: three nodes on one PostgreSQL, polling the
// store only once an hour. A token revoked on one node, a principal
// suspended, its suspension lifted, and a policy change are seen by the
// other two through LISTEN/NOTIFY; the test records how long each took
// after the call that made the change returned (BENCHMARKS.md).
func TestChangesReachEveryNode(t *testing.T) {
	opts := clusterOpts
	opts.PollInterval = time.Hour
	a := startWith(t, postgres(), opts)
	b, c := a.copyNode(), a.copyNode()
	others := []*node{b, c}
	cfg, err := config.Load(a.Dir, a.Env)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), cfg.DatabaseURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })

	var revoke, suspend, lift []time.Duration
	const rounds = 10
	for i := range rounds {
		id, secret := a.newServiceClient("svc-"+strings.Repeat("x", i+1), "admin")
		tok := a.Token(id, secret)
		waitStatus(t, others, tok, "/v1/collections", 200, time.Now())

		if st, _, body := a.do("POST", "/v1/oauth/revoke", "", "application/x-www-form-urlencoded", strings.NewReader("token="+tok)); st != 200 {
			t.Fatalf("revoke: %d %s", st, body)
		}
		revoke = append(revoke, waitStatus(t, others, tok, "/v1/collections", 401, time.Now())...)

		tok = a.Token(id, secret)
		waitStatus(t, others, tok, "/v1/collections", 200, time.Now())
		// What the detector on a node does when it suspends a principal.
		if err := db.SuspendPrincipal(context.Background(), id, time.Now().Add(time.Hour), "test"); err != nil {
			t.Fatal(err)
		}
		suspend = append(suspend, waitStatus(t, others, tok, "/v1/collections", 403, time.Now())...)

		admin := a.Token(a.Init.ClientID, a.Init.ClientSecret)
		if st, _, body := a.do("DELETE", "/v1/security/suspensions/"+id, admin, "", nil); st != 204 {
			t.Fatalf("lift: %d %s", st, body)
		}
		lift = append(lift, waitStatus(t, others, tok, "/v1/collections", 200, time.Now())...)
	}

	// A policy change: the viewer role may read the audit log once the
	// policy says so, on every node.
	vid, vsecret := a.newServiceClient("viewer", "viewer")
	vtok := a.Token(vid, vsecret)
	waitStatus(t, others, vtok, "/v1/audit/events?limit=1", 403, time.Now())
	admin := a.Token(a.Init.ClientID, a.Init.ClientSecret)
	pol := "roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n  viewer:\n    - resources: [audit]\n      actions: [read]\n"
	if st, _, body := a.do("PUT", "/v1/policy", admin, "application/yaml", strings.NewReader(pol)); st != 204 {
		t.Fatalf("put policy: %d %s", st, body)
	}
	policy := waitStatus(t, others, vtok, "/v1/audit/events?limit=1", 200, time.Now())

	for _, m := range []struct {
		what string
		d    []time.Duration
	}{{"revocation", revoke}, {"suspension", suspend}, {"lifted suspension", lift}, {"policy", policy}} {
		slices.Sort(m.d)
		t.Logf("%s seen by the other nodes after: median %v, max %v (%d observations)", m.what, m.d[len(m.d)/2], m.d[len(m.d)-1], len(m.d))
	}
}

// TestChangesAfterTheListenerDrops: when a node's notification
// connection is cut (here by the database, as a failover or an idle
// timeout would), the node reconnects, reloads what it may have missed,
// and follows changes again, still without polling.
func TestChangesAfterTheListenerDrops(t *testing.T) {
	opts := clusterOpts
	opts.PollInterval = time.Hour
	a := startWith(t, postgres(), opts)
	b := a.copyNode()
	cfg, err := config.Load(a.Dir, a.Env)
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.Intruder(t, cfg.DatabaseURL)
	var schema string
	if err := db.QueryRowContext(context.Background(), `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	id, secret := a.newServiceClient("svc", "admin")
	tok := a.Token(id, secret)
	waitStatus(t, []*node{b}, tok, "/v1/collections", 200, time.Now())

	// Cut every listener of this schema (both nodes'), then wait until
	// one is back, which the node's logs say.
	cut := func() int {
		var n int
		err := db.QueryRowContext(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE query = $1`, `LISTEN "coffer_changes_`+schema+`"`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := cut(); n < 2 {
		t.Fatalf("cut %d listeners, want both nodes'", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.Logs.String(), "change notifications lost") {
		if time.Now().After(deadline) {
			t.Fatal("the node did not notice its listener was cut")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A revocation made while b may still be reconnecting is seen: by the
	// reload after reconnecting, or by the notification.
	if st, _, body := a.do("POST", "/v1/oauth/revoke", "", "application/x-www-form-urlencoded", strings.NewReader("token="+tok)); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	waitStatus(t, []*node{b}, tok, "/v1/collections", 401, time.Now())
	if st, _, body := b.do("GET", "/readyz", "", "", nil); st != 200 {
		t.Fatalf("readyz after reconnecting: %d %s", st, body)
	}
}

// TestTransitRotationReachesEveryNode: transit key metadata is served from
// each node's memory (#19); a rotation acknowledged by one node is used
// for encryption by that node at once and by the others once the change
// notification arrives, with polling an hour away. The test records how
// long the others took (BENCHMARKS.md).
func TestTransitRotationReachesEveryNode(t *testing.T) {
	opts := clusterOpts
	opts.PollInterval = time.Hour // the cache's own bound: only notifications can do it
	a := startWith(t, postgres(), opts)
	b, c := a.copyNode(), a.copyNode()
	tok := a.Token(a.Init.ClientID, a.Init.ClientSecret)
	if st, _, body := a.postJSON("/v1/keys", tok, map[string]any{"name": "prop"}); st != 201 {
		t.Fatalf("create key: %d %s", st, body)
	}
	// encryptsUnder tells whether n encrypts under version v now.
	encryptsUnder := func(n *node, v int) bool {
		st, _, body := n.postJSON("/v1/keys/prop/encrypt", tok, map[string]any{"plaintext": "eA=="})
		return st == 200 && strings.Contains(string(body), fmt.Sprintf(`"coffer:v%d:`, v))
	}
	var seen []time.Duration
	for v := 1; v <= 6; v++ {
		if v > 1 {
			if st, _, body := a.postJSON("/v1/keys/prop/rotate", tok, map[string]any{}); st != 200 {
				t.Fatalf("rotate: %d %s", st, body)
			}
			if !encryptsUnder(a, v) {
				t.Fatalf("the node that rotated to v%d did not encrypt under it at once", v)
			}
		}
		start := time.Now()
		for _, n := range []*node{b, c} {
			for !encryptsUnder(n, v) {
				if time.Since(start) > 10*time.Second {
					t.Fatalf("%s still encrypts under an older version than v%d 10 s after the rotation", n.Addr, v)
				}
				time.Sleep(time.Millisecond)
			}
			if v > 1 {
				seen = append(seen, time.Since(start))
			}
		}
	}
	slices.Sort(seen)
	t.Logf("transit rotation used by the other nodes after: median %v, max %v (%d observations)", seen[len(seen)/2], seen[len(seen)-1], len(seen))
}
