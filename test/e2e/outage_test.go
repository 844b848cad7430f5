package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
)

// restartPostgres restarts the local PostgreSQL cluster (shared with other
// tests: the restart is short, and only this test does it).
func restartPostgres(t *testing.T) {
	t.Helper()
	vers, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(vers) == 0 {
		t.Fatalf("no local PostgreSQL cluster to restart: %v", err)
	}
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", vers[0].Name(), "main", "restart").CombinedOutput()
	if err != nil {
		t.Fatalf("restart PostgreSQL: %v %s", err, out)
	}
}

// TestDatabaseRestartUnderLoad: three nodes on one PostgreSQL under write
// and read load while PostgreSQL restarts (only with
// COFFER_TEST_PG_RESTART=1, which .ci/run sets: the database is shared).
// No caller ever gets a 500: during the outage they get 503 with
// Retry-After, and /readyz says not ready; every write acknowledged is
// readable afterwards; creates retried with their Idempotency-Key (after a
// 503, a 409 or a dropped connection) made exactly one record each; every
// node's audit chain verifies.
func TestDatabaseRestartUnderLoad(t *testing.T) {
	if os.Getenv("COFFER_TEST_PG_RESTART") != "1" {
		t.Skip("restarts the shared PostgreSQL: set COFFER_TEST_PG_RESTART=1")
	}
	a := startWith(t, postgres(), clusterOpts)
	nodes := []*node{a, a.copyNode(), a.copyNode()}
	if err := a.Admin.CreateCollection(context.Background(), customers); err != nil {
		t.Fatal(err)
	}
	tok := a.Token(a.Init.ClientID, a.Init.ClientSecret)
	const recs = "/v1/collections/customers/records"

	var (
		mu        sync.Mutex
		acked     = map[string]string{} // record id → email
		keys      = map[string]string{} // idempotency key → record id
		failures  []string
		unavail   atomic.Int64
		notReady  atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		requested atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	// check classifies one answer: 5xx other than 503-with-Retry-After fails.
	check := func(what string, st int, h http.Header, body []byte) {
		switch {
		case st == 503:
			unavail.Add(1)
			if h.Get("Retry-After") == "" || h.Get("Content-Type") != "application/problem+json" {
				fail("%s: 503 without Retry-After or problem+json: %v %s", what, h, body)
			}
		case st >= 500:
			fail("%s: %d %s", what, st, body)
		}
	}
	// create sends one create with its key until it is acknowledged,
	// round robin over the nodes.
	create := func(w, i int) {
		key := fmt.Sprintf("w%d-%d", w, i)
		email := fmt.Sprintf("u%d.%d@example.com", w, i)
		body := `{"owner":"o","data":{"email":"` + email + `"}}`
		deadline := time.Now().Add(90 * time.Second)
		for try := 0; ; try++ {
			n := nodes[(w+i+try)%len(nodes)]
			st, h, b, err := n.tryPost(recs, tok, key, body)
			requested.Add(1)
			if err == nil {
				check("create", st, h, b)
			}
			if err == nil && st == 201 {
				var out struct {
					ID string `json:"id"`
				}
				mustJSON(t, b, &out)
				mu.Lock()
				if was, ok := keys[key]; ok && was != out.ID {
					failures = append(failures, fmt.Sprintf("key %s answered %s then %s", key, was, out.ID))
				}
				keys[key], acked[out.ID] = out.ID, email
				mu.Unlock()
				return
			}
			if err == nil && st != 503 && st != 409 {
				fail("create %s: %d %s", key, st, b)
				return
			}
			time.Sleep(100 * time.Millisecond)
			if time.Now().After(deadline) {
				fail("create %s never acknowledged", key)
				return
			}
		}
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				create(w, i)
			}
		}()
	}
	// A reader reads back acknowledged records.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			mu.Lock()
			var id string
			for id = range acked {
				break
			}
			mu.Unlock()
			if id == "" {
				continue
			}
			st, h, b, err := nodes[i%3].tryGet(recs+"/"+id, tok)
			if err == nil {
				check("read", st, h, b)
			}
		}
	}()
	// /readyz is watched on every node.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			st, _, _, err := nodes[i%3].tryGet("/readyz", "")
			if err == nil && st == 503 {
				notReady.Add(1)
			}
		}
	}()

	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	time.Sleep(2 * time.Second)
	before := len(snapshot(&mu, acked))
	restartPostgres(t)
	// Load goes on until every node is ready again, and a little more.
	waitFor(t, "every node ready after the restart", func() bool {
		for _, n := range nodes {
			if st, _, _, err := n.tryGet("/readyz", ""); err != nil || st != 200 {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d failures, first: %s", len(failures), strings.Join(failures, "\n"))
	}
	t.Logf("%d creates acknowledged (%d before the restart), %d requests, %d answered 503, /readyz not ready %d times",
		len(acked), before, requested.Load(), unavail.Load(), notReady.Load())
	if notReady.Load() == 0 {
		t.Error("/readyz never said not ready while PostgreSQL restarted")
	}
	if len(acked) <= before {
		t.Error("no create acknowledged after the restart")
	}
	// Every acknowledged write is readable, and each key made one record.
	for id, email := range acked {
		st, _, b := nodes[0].do("GET", recs+"/"+id, tok, "", nil)
		if st != 200 || !strings.Contains(string(b), email) {
			t.Fatalf("acknowledged record %s: %d %s", id, st, b)
		}
	}
	if c := countRecords(t, a.openStore()); c != len(keys) {
		t.Fatalf("%d records for %d idempotency keys", c, len(keys))
	}
	// Every node's audit chain verifies.
	for _, n := range nodes {
		n.Stop()
	}
	cfg, err := config.Load(a.Dir, a.Env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.VerifyAudit(context.Background(), cfg); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
}

func snapshot(mu *sync.Mutex, m map[string]string) map[string]string {
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// tryPost is post that returns a transport error instead of failing.
func (n *node) tryPost(path, token, key, body string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest("POST", n.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return n.send(req)
}

// tryGet is a GET that returns a transport error instead of failing.
func (n *node) tryGet(path, token string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest("GET", n.URL+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return n.send(req)
}

func (n *node) send(req *http.Request) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(req.Context(), 20*time.Second)
	defer cancel()
	resp, err := n.HTTP.Do(req.WithContext(ctx))
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		k, rerr := resp.Body.Read(buf)
		b.Write(buf[:k])
		if rerr != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, []byte(b.String()), nil
}
