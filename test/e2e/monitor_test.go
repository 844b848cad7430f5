package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/store/storetest"
	_ "modernc.org/sqlite"
)

// receiver is a webhook endpoint that keeps the events whose signature
// verifies.
type receiver struct {
	mu     sync.Mutex
	kinds  map[string]int
	forged int
	secret string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !detect.VerifySignature(r.secret, body, req.Header.Get(detect.HeaderSignature)) {
		r.forged++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		Kind string `json:"kind"`
	}
	_ = json.Unmarshal(body, &ev)
	r.kinds[ev.Kind]++
}

func (r *receiver) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kinds[kind]
}

// withConfig rewrites the node's config file before it serves.
func withConfig(t *testing.T, dir string, edit func(c *config.Config)) {
	t.Helper()
	c, err := config.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	edit(c)
	if err := os.Remove(filepath.Join(dir, config.FileName)); err != nil {
		t.Fatal(err)
	}
	if err := config.Write(dir, c); err != nil {
		t.Fatal(err)
	}
}

// TestDetectionAndWebhooks: 600 detokenized values raise data.bulk_read,
// 20 bad client secrets raise auth.bruteforce, and a webhook receiver gets
// both with valid signatures.
func TestDetectionAndWebhooks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		rcv := &receiver{kinds: map[string]int{}, secret: "whsec-test-1234"}
		hook := httptest.NewServer(rcv)
		t.Cleanup(hook.Close)
		n.Stop()
		withConfig(t, n.Dir, func(c *config.Config) {
			c.Detect.Webhooks = []config.Webhook{{URL: hook.URL + "/coffer", Secret: rcv.secret}}
		})
		n.Serve("127.0.0.1:0")

		items := make([]client.TokenItem, 600)
		for i := range items {
			items[i] = client.TokenItem{Value: "ada@example.com", Type: "email"}
		}
		toks, err := n.Admin.Tokenize(ctx, items)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Admin.Detokenize(ctx, toks); err != nil {
			t.Fatal(err)
		}
		// The brute force below also locks out its source address (this
		// one): take the admin's token first.
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		for i := 0; i < 20; i++ {
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"cl_attacker"}, "client_secret": {"guess"}}
			n.do("POST", "/v1/oauth/token", "", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		}
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) && (rcv.count(detect.KindBulkRead) == 0 || rcv.count(detect.KindBruteForce) == 0) {
			time.Sleep(100 * time.Millisecond)
		}
		if rcv.count(detect.KindBulkRead) == 0 || rcv.count(detect.KindBruteForce) == 0 || rcv.forged != 0 {
			t.Fatalf("webhook got %v (forged %d)", rcv.kinds, rcv.forged)
		}
		st, _, b := n.do("GET", "/v1/security/events?kind="+detect.KindBulkRead, tok, "", nil)
		var out struct {
			Events []struct {
				Kind, Principal string
			} `json:"events"`
		}
		mustJSON(t, b, &out)
		if st != 200 || len(out.Events) == 0 || out.Events[0].Principal != n.Init.ClientID {
			t.Fatalf("security events: %d %s", st, b)
		}
		if strings.Contains(string(b), "ada@example.com") {
			t.Fatal("a security event holds a value")
		}
	})
}

// TestSuspensionResponse: with data.canary configured to suspend, a client
// that reads a canary record is refused (403) on its next requests, new
// tokens included, until an admin lifts the suspension over the API; then
// it reads again. Lifting a principal that is not suspended is a 204 that
// changes nothing.
func TestSuspensionResponse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		n.Stop()
		withConfig(t, n.Dir, func(c *config.Config) {
			c.Detect.SuspendOn = []string{detect.KindCanary}
		})
		n.Serve("127.0.0.1:0")
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		if err := n.Admin.PutPolicy(ctx, []byte(accessPolicy), "yaml"); err != nil {
			t.Fatal(err)
		}
		sup, err := n.Admin.CreateClient(ctx, "support-desk", []string{"support"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		admTok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		plain, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"name": "Real"}})
		if err != nil {
			t.Fatal(err)
		}
		st, _, b := n.postJSON("/v1/collections/customers/records", admTok,
			map[string]any{"owner": "o", "canary": true, "data": map[string]any{"name": "Decoy", "email": "decoy@example.com"}})
		var canary struct{ ID string }
		mustJSON(t, b, &canary)
		if st != 201 || canary.ID == "" {
			t.Fatalf("plant a canary: %d %s", st, b)
		}
		supTok := n.Token(sup.ClientID, sup.ClientSecret)
		read := func(tok, id string) (int, []byte) {
			st, _, b := n.do("GET", "/v1/collections/customers/records/"+id, tok, "", nil)
			return st, b
		}
		if st, b := read(supTok, plain); st != 200 {
			t.Fatalf("support reads a record: %d %s", st, b)
		}
		if st, b := read(supTok, canary.ID); st != 200 {
			t.Fatalf("support reads the canary: %d %s", st, b)
		}
		// The suspension follows the event, not the request.
		deadline := time.Now().Add(10 * time.Second)
		st, b = read(supTok, plain)
		for st == 200 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			st, b = read(supTok, plain)
		}
		if st != 403 || !strings.Contains(string(b), "suspended") {
			t.Fatalf("a suspended client reads: %d %s", st, b)
		}
		if st, b := read(n.Token(sup.ClientID, sup.ClientSecret), plain); st != 403 {
			t.Fatalf("a suspended client with a new token reads: %d %s", st, b)
		}

		// Lifting someone never suspended: 204, nothing else changes.
		if st, _, b := n.do("DELETE", "/v1/security/suspensions/nobody", admTok, "", nil); st != 204 {
			t.Fatalf("lift a principal never suspended: %d %s", st, b)
		}
		if st, b := read(supTok, plain); st != 403 {
			t.Fatalf("still suspended after lifting someone else: %d %s", st, b)
		}
		if st, _, b := n.do("DELETE", "/v1/security/suspensions/"+sup.ClientID, admTok, "", nil); st != 204 {
			t.Fatalf("lift the suspension: %d %s", st, b)
		}
		if st, b := read(supTok, plain); st != 200 {
			t.Fatalf("read after the suspension is lifted: %d %s", st, b)
		}
	})
}

// TestAuditTrail: every request is in the audit log with its decision, no
// value is, and the chain verifies offline — and fails once the database is
// edited.
func TestAuditTrail(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	ctx := context.Background()
	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		t.Fatal(err)
	}
	const marker = "auditmarker@example.com"
	id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": marker}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Admin.Search(ctx, "customers", map[string]any{"email": marker}, 1); err != nil {
		t.Fatal(err)
	}
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	n.do("GET", "/v1/collections/customers/records/"+id, "bogus-token", "", nil) // a 401, audited too
	st, _, b := n.do("GET", "/v1/audit/events?limit=1000", tok, "", nil)
	if st != 200 {
		t.Fatalf("audit events: %d %s", st, b)
	}
	if strings.Contains(string(b), marker) {
		t.Fatal("the audit log holds a submitted value")
	}
	var out struct {
		Events []map[string]any `json:"events"`
	}
	mustJSON(t, b, &out)
	seen := map[string]bool{}
	for _, e := range out.Events {
		for _, k := range []string{"id", "time", "principal", "action", "resource", "decision", "reason", "status", "request_id", "hash", "prev_hash"} {
			if _, ok := e[k]; !ok {
				t.Fatalf("event lacks %s: %v", k, e)
			}
		}
		seen[e["action"].(string)+" "+e["decision"].(string)] = true
	}
	for _, want := range []string{"create allow", "search allow", "token allow", "admin allow", "request deny"} {
		if !seen[want] {
			t.Errorf("no %q event in %v", want, seen)
		}
	}
	n.Stop()
	bin := buildCoffer(t)
	outb, err := exec.Command(bin, "audit", "verify", "--data-dir", n.Dir).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(outb), "ok: ") {
		t.Fatalf("verify intact log: %v %s", err, outb)
	}
	// An owner with direct database access edits an event: verify fails.
	sqlite(t, filepath.Join(n.Dir, "coffer.db"),
		`DROP TRIGGER audit_log_no_update; UPDATE audit_log SET principal = 'someone-else' WHERE action = 'create';`)
	outb, err = exec.Command(bin, "audit", "verify", "--data-dir", n.Dir).CombinedOutput()
	if err == nil || !strings.Contains(string(outb), "audit") {
		t.Fatalf("verify of an edited log passed: %s", outb)
	}
}

// TestAuditFailsClosed fills the disk under a required audit sink: data
// requests then fail with 503 and return no data; once there is room again,
// they succeed — nothing is answered that was not audited.
func TestAuditFailsClosed(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	ctx := context.Background()
	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		t.Fatal(err)
	}
	const marker = "closed@example.com"
	id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": marker}})
	if err != nil {
		t.Fatal(err)
	}
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	n.Stop()
	// A tiny filesystem for the audit file (root can mount tmpfs here).
	fs := filepath.Join(n.Dir, "auditfs")
	if err := os.MkdirAll(fs, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", fs).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs to fill: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", fs).Run() })
	withConfig(t, n.Dir, func(c *config.Config) { c.Audit.File = filepath.Join(fs, "audit.jsonl") })
	n.Serve("127.0.0.1:0")
	failed := false
	for i := 0; i < 2000 && !failed; i++ {
		st, h, b := n.do("GET", "/v1/collections/customers/records/"+id, tok, "", nil)
		switch st {
		case 200:
		case 503:
			failed = true
			if h.Get("Retry-After") == "" || strings.Contains(string(b), marker) {
				t.Fatalf("fail-closed answer: %v %s", h, b)
			}
		default:
			t.Fatalf("status %d: %s", st, b)
		}
	}
	if !failed {
		t.Fatal("requests kept succeeding on a full audit disk")
	}
	if st, _, _ := n.do("GET", "/readyz", "", "", nil); st != 503 {
		t.Fatalf("readyz on a full audit disk: %d", st)
	}
	// Room again: the writer catches up and requests succeed.
	if out, err := exec.Command("mount", "-o", "remount,size=8m", fs).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	ok := false
	for i := 0; i < 50 && !ok; i++ {
		st, _, b := n.do("GET", "/v1/collections/customers/records/"+id, tok, "", nil)
		ok = st == 200 && strings.Contains(string(b), marker)
		if !ok {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatal("requests did not recover once the audit disk had room")
	}
	n.Stop()
	if out, err := exec.Command(buildCoffer(t), "audit", "verify", "--data-dir", n.Dir).CombinedOutput(); err != nil {
		t.Fatalf("audit verify after the outage: %v %s", err, out)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary buildCoffer built, if any, after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// buildCoffer builds the coffer binary once per test run (removed by
// TestMain).
func buildCoffer(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "coffer-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "coffer")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/cofferhq/coffer/cmd/coffer").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// sqlite runs SQL directly on a database file, as an attacker or careless
// owner with file access would.
func sqlite(t *testing.T, path, script string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(script); err != nil {
		t.Fatalf("sqlite: %v", err)
	}
}
