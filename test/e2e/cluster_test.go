package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/cluster"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// clusterOpts shortens the node lease so that the tests that wait for a
// lease to run out wait little; nothing is timed.
var clusterOpts = app.Options{NodeLeaseTTL: 2 * time.Second, NodeHeartbeat: 200 * time.Millisecond}

// postgres returns the PostgreSQL backend (the test skips without it,
// outside CI).
func postgres() storetest.Backend { return storetest.Backends()[1] }

// copyDataDir copies a data directory as an operator adding a node would:
// every file, modes kept.
func copyDataDir(t testing.TB, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "data")
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), info.Mode().Perm())
		}
		b, err := os.ReadFile(p) // #nosec G304 -- the test's own temporary directory
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// copyNode serves a copy of n's data directory: the issue's "init once,
// copy the data directory to a second node, same database URL".
func (n *node) copyNode(env ...string) *node {
	n.t.Helper()
	m := &node{Server: n.Peer(env...), t: n.t}
	m.Dir = copyDataDir(n.t, n.Dir)
	m.Serve("127.0.0.1:0")
	return m
}

// openServer opens a server on dir with env and returns the error, for
// the tests of what a node refuses, and a stop function (also run at
// cleanup; once).
func openServer(t testing.TB, dir string, opts app.Options, env ...string) (func(), *syncBuffer, error) {
	t.Helper()
	cfg, err := config.Load(dir, env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := app.Open(context.Background(), cfg, opts)
	if err != nil {
		return func() {}, logs, err
	}
	stop := sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	t.Cleanup(stop)
	return stop, logs, nil
}

type nodeView struct {
	Node          string    `json:"node"`
	Host          string    `json:"host"`
	Version       string    `json:"version"`
	SchemaVersion int64     `json:"schema_version"`
	StartedAt     time.Time `json:"started_at"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Self          bool      `json:"self"`
}

// sysNodes returns GET /v1/sys/nodes as token sees it.
func (n *node) sysNodes(token string) []nodeView {
	n.t.Helper()
	st, _, b := n.do("GET", "/v1/sys/nodes", token, "", nil)
	if st != 200 {
		n.t.Fatalf("GET /v1/sys/nodes on %s: %d %s", n.Addr, st, b)
	}
	var out struct {
		Nodes []nodeView `json:"nodes"`
	}
	mustJSON(n.t, b, &out)
	return out.Nodes
}

// TestClusterFromACopiedDataDir is the scenario: one init, the
// data directory copied to a second node with another public URL, the same
// PostgreSQL, nothing else set. The two nodes get distinct ids, every
// request on either succeeds (no audit chain collision), a token from
// either is accepted by the other, both publish the same keys and issuer,
// GET /v1/sys/nodes lists both, and every audit chain verifies.
func TestClusterFromACopiedDataDir(t *testing.T) {
	a := startWith(t, postgres(), clusterOpts)
	b := a.copyNode("COFFER_PUBLIC_URL=https://node-b.invalid:8443")

	ta, tb := a.Token(a.Init.ClientID, a.Init.ClientSecret), b.Token(a.Init.ClientID, a.Init.ClientSecret)
	for i := range 20 {
		for _, c := range []struct {
			n     *node
			token string
		}{{a, tb}, {b, ta}, {a, ta}, {b, tb}} {
			if st, _, body := c.n.do("GET", "/v1/collections", c.token, "", nil); st != 200 {
				t.Fatalf("request %d on %s: %d %s", i, c.n.Addr, st, body)
			}
		}
	}

	va, vb := a.sysNodes(ta), b.sysNodes(ta)
	if len(va) != 2 || len(vb) != 2 {
		t.Fatalf("live nodes: %+v / %+v, want two", va, vb)
	}
	if va[0].Node == va[1].Node || va[0].Node == "" {
		t.Fatalf("the copied node shares its id: %+v", va)
	}
	selfA, selfB := "", ""
	for i := range va {
		if va[i].Self {
			selfA = va[i].Node
		}
		if vb[i].Self {
			selfB = vb[i].Node
		}
		if va[i].Version == "" || va[i].SchemaVersion < 15 || va[i].LastHeartbeat.IsZero() || va[i].Host == "" {
			t.Fatalf("node view lacks a field: %+v", va[i])
		}
	}
	if selfA == "" || selfB == "" || selfA == selfB {
		t.Fatalf("self marks: %q on a, %q on b", selfA, selfB)
	}
	// The id is kept: a restart keeps it, and config.Load reads it back.
	b.Restart()
	if again := selfOf(t, b.sysNodes(ta)); again != selfB {
		t.Fatalf("b's id after a restart: %q, was %q", again, selfB)
	}
	cfg, err := config.Load(b.Dir, b.Env)
	if err != nil || cfg.Node != selfB {
		t.Fatalf("config.Load node = %q, %v; want %q", cfg.Node, err, selfB)
	}

	// The deployment's keys and issuer, on every node.
	_, _, jwksA := a.do("GET", "/.well-known/jwks.json", "", "", nil)
	_, _, jwksB := b.do("GET", "/.well-known/jwks.json", "", "", nil)
	if string(jwksA) != string(jwksB) {
		t.Fatalf("the nodes publish different keys:\n%s\n%s", jwksA, jwksB)
	}
	issuer := func(n *node) string {
		_, _, body := n.do("GET", "/.well-known/oauth-authorization-server", "", "", nil)
		var m struct {
			Issuer string `json:"issuer"`
		}
		mustJSON(t, body, &m)
		return m.Issuer
	}
	if ia, ib := issuer(a), issuer(b); ia != ib || ia == "" {
		t.Fatalf("issuers differ: %q and %q", ia, ib)
	}
	if strings.Contains(a.Logs.String()+b.Logs.String(), "audit batch failed") {
		t.Fatal("an audit batch failed: the nodes collided on a chain")
	}

	// Every node's chain verifies.
	acfg, err := config.Load(a.Dir, a.Env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.VerifyAudit(context.Background(), acfg); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
}

func selfOf(t *testing.T, vs []nodeView) string {
	t.Helper()
	for _, v := range vs {
		if v.Self {
			return v.Node
		}
	}
	t.Fatalf("no node marked self: %+v", vs)
	return ""
}

// TestClusterRefusesASharedNodeID: a node configured with the id of a live
// node is refused at start, with a message that names the holder and what
// to do, never later as 503s; once the holder stops, the id is free at
// once; a holder that died without releasing its lease gives it up when
// the lease runs out.
func TestClusterRefusesASharedNodeID(t *testing.T) {
	a := startWith(t, postgres(), clusterOpts, "COFFER_NODE=shared-node")
	dir := copyDataDir(t, a.Dir)
	_, _, err := openServer(t, dir, clusterOpts, append(a.Env, "COFFER_NODE=shared-node")...)
	var inUse *cluster.InUseError
	if !errors.As(err, &inUse) || !errors.Is(err, cluster.ErrNodeInUse) {
		t.Fatalf("a second node with a live node's id: %v", err)
	}
	for _, want := range []string{`node id "shared-node" is in use by another live node`, "last heartbeat", "remove the node setting"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("the refusal does not say %q: %v", want, err)
		}
	}
	// The holder keeps serving.
	tok := a.Token(a.Init.ClientID, a.Init.ClientSecret)
	if st, _, body := a.do("GET", "/v1/collections", tok, "", nil); st != 200 {
		t.Fatalf("the holder after the refusal: %d %s", st, body)
	}

	// A clean stop releases the id.
	a.Stop()
	if _, _, err := openServer(t, dir, clusterOpts, append(a.Env, "COFFER_NODE=shared-node")...); err != nil {
		t.Fatalf("the id of a stopped node: %v", err)
	}

	// A holder that died: its row stays leased, nobody renews it.
	cfg, err := config.Load(a.Dir, a.Env)
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.Intruder(t, cfg.DatabaseURL)
	now := time.Now()
	if _, err := db.ExecContext(context.Background(), `INSERT INTO nodes (node, instance, host, version, schema_version, started_at, heartbeat_at, lease_until)
		VALUES ('dead-node', 'gone', 'elsewhere', 'v0', 15, $1, $1, $2)`, now.UnixMicro(), now.Add(time.Second).UnixMicro()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openServer(t, copyDataDir(t, a.Dir), clusterOpts, append(a.Env, "COFFER_NODE=dead-node")...); err != nil {
		t.Fatalf("the id of a dead node, once its lease ran out: %v", err)
	}
}

// TestSysNodesIsPolicyDecidedAndAudited: a client without read on nodes is
// refused; the admin's read is in the audit log.
func TestSysNodesIsPolicyDecidedAndAudited(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		id, secret := n.newServiceClient("viewer", "viewer")
		tok := n.Token(id, secret)
		if st, _, body := n.do("GET", "/v1/sys/nodes", tok, "", nil); st != 403 {
			t.Fatalf("without read on nodes: %d %s", st, body)
		}
		admin := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		vs := n.sysNodes(admin)
		if len(vs) != 1 || !vs[0].Self {
			t.Fatalf("one node, itself: %+v", vs)
		}
		st, _, body := n.do("GET", "/v1/audit/events?action=read&limit=50", admin, "", nil)
		if st != 200 {
			t.Fatalf("audit events: %d %s", st, body)
		}
		var evs struct {
			Events []struct {
				Resource string `json:"resource"`
				Decision string `json:"decision"`
			} `json:"events"`
		}
		mustJSON(t, body, &evs)
		seen := map[string]bool{}
		for _, e := range evs.Events {
			if e.Resource == "nodes" {
				seen[e.Decision] = true
			}
		}
		if !seen["allow"] || !seen["deny"] {
			t.Fatalf("the reads of nodes are not audited: %s", body)
		}
	})
}

// TestNodeIDOnSQLite: a single SQLite node keeps one generated id across
// restarts, in the data directory, and lists itself.
func TestNodeIDOnSQLite(t *testing.T) {
	n := startWith(t, storetest.Backends()[0], clusterOpts)
	admin := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	first := selfOf(t, n.sysNodes(admin))
	b, err := os.ReadFile(filepath.Join(n.Dir, cluster.IDFileName))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Node string `json:"node"`
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Node != first {
		t.Fatalf("node-id file %s: %v, served as %q", b, err, first)
	}
	n.Restart()
	// Through the Go SDK.
	nodes, err := n.Admin.Nodes(context.Background())
	if err != nil || len(nodes) != 1 || !nodes[0].Self || nodes[0].Node != first || nodes[0].LastHeartbeat.IsZero() {
		t.Fatalf("client Nodes after restart = %+v, %v; want %q", nodes, err, first)
	}
}
