package attack

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/detect"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// The class "audit tampering by column and by truncation": an intruder
// with write access to the database (the append-only triggers dropped)
// edits the columns stored beside an event's hashed body, or cuts the
// newest events off together with the checkpoints after them. `coffer
// audit verify` (app.VerifyAudit, the code behind the command) must name
// the node and seq of each change, and the events API must never serve a
// row whose columns disagree with its body as matching a filter.

// tamperDeployment is a deployment whose audit log an intruder edits.
type tamperDeployment struct {
	n    *node
	s    setup
	node string         // the serving node's chain
	db   *sql.DB        // the intruder's connection
	file string         // audit.file, "" when not configured
	ws   *witnessServer // its https witness, if any
}

// forEachTamperBackend runs fn on a fresh deployment per backend, served
// with checkpoints every 4 events and the settings settings returns (given
// a directory of the test's own, and the deployment to come, whose ws it
// may set), after some audited traffic.
func forEachTamperBackend(t *testing.T, settings func(t *testing.T, dir string, d *tamperDeployment) map[string]string, fn func(t *testing.T, d *tamperDeployment)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			d := &tamperDeployment{s: setup{settings: map[string]string{"audit.checkpoint_every": "4"}}}
			for k, v := range settings(t, dir, d) {
				d.s.settings[k] = v
			}
			n := start(t, b, d.s)
			cfg := n.config(d.s)
			d.n, d.node, d.file = n, cfg.Node, cfg.Audit.File
			d.traffic(t, 10)
			_, dsn := cfg.Database()
			d.db = storetest.Intruder(t, dsn)
			fn(t, d)
		})
	}
}

// traffic makes k audited requests.
func (d *tamperDeployment) traffic(t *testing.T, k int) {
	t.Helper()
	for range k {
		d.n.must(t, 200, "GET", "/v1/policy", d.n.admin, nil, nil)
	}
}

// verify runs the offline verification behind `coffer audit verify`.
func (d *tamperDeployment) verify(t *testing.T) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return app.VerifyAudit(ctx, d.n.config(d.s))
}

// exec runs an intruder's statement.
func (d *tamperDeployment) exec(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	res, err := d.db.ExecContext(context.Background(), q, args...)
	if err != nil {
		t.Fatalf("intruder: %s: %v", q, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// head returns the node's last seq in the database.
func (d *tamperDeployment) head(t *testing.T) uint64 {
	t.Helper()
	var seq int64
	if err := d.db.QueryRowContext(context.Background(), `SELECT max(seq) FROM audit_log WHERE node = $1`, d.node).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return uint64(seq)
}

// checkpointSeqs returns the seqs of the node's checkpoints in the database.
func (d *tamperDeployment) checkpointSeqs(t *testing.T) []uint64 {
	t.Helper()
	rs, err := d.db.QueryContext(context.Background(), `SELECT seq FROM audit_checkpoints WHERE node = $1 ORDER BY seq`, d.node)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []uint64
	for rs.Next() {
		var s int64
		if err := rs.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, uint64(s))
	}
	return out
}

// cutTail deletes the node's events and checkpoints after seq keep.
func (d *tamperDeployment) cutTail(t *testing.T, keep uint64) {
	t.Helper()
	if n := d.exec(t, `DELETE FROM audit_log WHERE node = $1 AND seq > $2`, d.node, int64(keep)); n == 0 {
		t.Fatal("cut: no event deleted")
	}
	d.exec(t, `DELETE FROM audit_checkpoints WHERE node = $1 AND seq > $2`, d.node, int64(keep))
}

// wantFinding fails unless err names a *audit.VerifyError at node and seq
// whose reason contains every part.
func wantFinding(t *testing.T, err error, node string, seq uint64, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("audit verify said ok; want a finding at %s seq %d", node, seq)
	}
	for _, e := range findings(err) {
		if e.Node != node || e.Seq != seq {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(e.Reason, p)
		}
		if ok {
			return
		}
	}
	t.Fatalf("no finding at node %q seq %d with %q in: %v", node, seq, parts, err)
}

// findings returns every *audit.VerifyError err holds.
func findings(err error) []*audit.VerifyError {
	var out []*audit.VerifyError
	var walk func(error)
	walk = func(err error) {
		if v, ok := err.(*audit.VerifyError); ok {
			out = append(out, v)
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

// fileSink is the settings of a deployment with an audit file.
func fileSink(_ *testing.T, dir string, _ *tamperDeployment) map[string]string {
	return map[string]string{"audit.file": dir + "/audit.jsonl"}
}

// TestAuditColumnTampering edits, one at a time, every column of a stored
// event (audit_log keeps each field once, the hash covering them all):
// audit verify must name the event and, the edit undone, say ok again.
func TestAuditColumnTampering(t *testing.T) {
	forEachTamperBackend(t, func(*testing.T, string, *tamperDeployment) map[string]string { return nil }, func(t *testing.T, d *tamperDeployment) {
		d.n.Stop() // the final checkpoint is written
		if _, err := d.verify(t); err != nil {
			t.Fatalf("verify before tampering: %v", err)
		}
		const seq = 5
		for _, c := range []struct {
			column string
			value  any
			reason string
		}{
			{"principal", "someone-else", "hash"},
			{"action", "delete", "hash"},
			{"time", int64(1), "hash"},
			{"hash", make([]byte, 32), "hash"},
			{"body", []byte{1}, "decode"},
		} {
			t.Run(c.column, func(t *testing.T) {
				var old any
				q := fmt.Sprintf(`SELECT %s FROM audit_log WHERE node = $1 AND seq = $2`, c.column)
				if err := d.db.QueryRowContext(context.Background(), q, d.node, seq).Scan(&old); err != nil {
					t.Fatal(err)
				}
				set := fmt.Sprintf(`UPDATE audit_log SET %s = $1 WHERE node = $2 AND seq = $3`, c.column)
				if n := d.exec(t, set, c.value, d.node, seq); n != 1 {
					t.Fatalf("edit %s: %d rows", c.column, n)
				}
				_, err := d.verify(t)
				wantFinding(t, err, d.node, seq, c.reason)
				d.exec(t, set, old, d.node, seq)
				if _, err := d.verify(t); err != nil {
					t.Fatalf("verify after undoing the %s edit: %v", c.column, err)
				}
			})
		}
	})
}

// TestAuditColumnTamperingHidesNothingFromTheAPI relabels events through
// the columns the events API filters on (principal, action, time): the
// listing recomputes each row's hash (it covers every column and the
// body), never serves an edited row as matching the filter, and the
// server flags it (log and metric) without waiting for audit verify,
// which names it too.
func TestAuditColumnTamperingHidesNothingFromTheAPI(t *testing.T) {
	forEachTamperBackend(t, func(*testing.T, string, *tamperDeployment) map[string]string { return nil }, func(t *testing.T, d *tamperDeployment) {
		// Event 5 is the admin's "read policy"; the intruder makes it look
		// like mallory's, like a "delete", and like one from the future.
		d.exec(t, `UPDATE audit_log SET principal = 'mallory' WHERE node = $1 AND seq = 5`, d.node)
		d.exec(t, `UPDATE audit_log SET action = 'delete' WHERE node = $1 AND seq = 6`, d.node)
		future := time.Now().Add(24 * time.Hour)
		d.exec(t, `UPDATE audit_log SET time = $1 WHERE node = $2 AND seq = 7`, future.UnixMicro(), d.node)
		for _, query := range []string{
			"principal=mallory",
			"action=delete",
			"since=" + url.QueryEscape(future.Add(-time.Minute).UTC().Format(time.RFC3339Nano)),
		} {
			var out struct {
				Events []audit.Event `json:"events"`
			}
			d.n.must(t, 200, "GET", "/v1/audit/events?"+query, d.n.admin, nil, &out)
			for _, e := range out.Events {
				if e.Node == d.node && e.Seq >= 5 && e.Seq <= 7 {
					t.Errorf("?%s served event %s, whose columns were edited to match", query, e.ID)
				}
			}
		}
		logs := d.n.Logs.String()
		for _, seq := range []string{`"seq":5`, `"seq":6`, `"seq":7`} {
			if !strings.Contains(logs, "audit row's columns disagree with its hashed body") || !strings.Contains(logs, seq) {
				t.Errorf("the server did not flag the edited row (%s) in its log", seq)
			}
		}
		if !strings.Contains(d.n.scrapeMetrics(t), "coffer_audit_row_mismatches_total 3") {
			t.Error("coffer_audit_row_mismatches_total is not 3")
		}
		d.n.Stop()
		_, err := d.verify(t)
		wantFinding(t, err, d.node, 5, "hash")
	})
}

// TestAuditTailCutSeenInTheFileSink cuts the newest events and the
// checkpoints after them from the database, while the file sink still
// holds them: verify names the first missing seq.
func TestAuditTailCutSeenInTheFileSink(t *testing.T) {
	forEachTamperBackend(t, fileSink, func(t *testing.T, d *tamperDeployment) {
		d.n.Stop()
		if _, err := d.verify(t); err != nil {
			t.Fatalf("verify before tampering: %v", err)
		}
		head := d.head(t)
		cps := d.checkpointSeqs(t)
		keep := cps[len(cps)-2] // cut back to a checkpoint: the database alone looks intact
		d.cutTail(t, keep)
		_, err := d.verify(t)
		wantFinding(t, err, d.node, keep+1, "file", "not in the database")
		if !strings.Contains(err.Error(), fmt.Sprintf("%d", head)) {
			t.Errorf("the finding does not name the file's last seq %d: %v", head, err)
		}
	})
}

// TestAuditFileAndDatabaseDiffer edits each side so the two copies
// disagree: an event only in the database (the file's tail cut), an
// edited hash, a missing checkpoint on either side.
func TestAuditFileAndDatabaseDiffer(t *testing.T) {
	forEachTamperBackend(t, fileSink, func(t *testing.T, d *tamperDeployment) {
		d.n.Stop()
		cps := d.checkpointSeqs(t)
		mid := cps[1]

		t.Run("checkpoint missing from the database", func(t *testing.T) {
			var row struct {
				hash string
				at   int64
				sig  []byte
				ver  int64
			}
			if err := d.db.QueryRowContext(context.Background(), `SELECT hash, time, signature, key_version FROM audit_checkpoints WHERE node = $1 AND seq = $2`,
				d.node, int64(mid)).Scan(&row.hash, &row.at, &row.sig, &row.ver); err != nil {
				t.Fatal(err)
			}
			d.exec(t, `DELETE FROM audit_checkpoints WHERE node = $1 AND seq = $2`, d.node, int64(mid))
			defer d.exec(t, `INSERT INTO audit_checkpoints (node, seq, hash, time, signature, key_version) VALUES ($1, $2, $3, $4, $5, $6)`,
				d.node, int64(mid), row.hash, row.at, row.sig, row.ver)
			_, err := d.verify(t)
			wantFinding(t, err, d.node, mid, "checkpoint", "not in the database")
		})

		t.Run("edited hash", func(t *testing.T) {
			var hash []byte
			if err := d.db.QueryRowContext(context.Background(), `SELECT hash FROM audit_log WHERE node = $1 AND seq = 3`, d.node).Scan(&hash); err != nil {
				t.Fatal(err)
			}
			forged := bytes.Repeat([]byte{0xaa}, 32)
			d.exec(t, `UPDATE audit_log SET hash = $1 WHERE node = $2 AND seq = 3`, forged, d.node)
			defer d.exec(t, `UPDATE audit_log SET hash = $1 WHERE node = $2 AND seq = 3`, hash, d.node)
			_, err := d.verify(t)
			wantFinding(t, err, d.node, 3, "hash")
			wantFinding(t, err, d.node, 3, "file", "differ")
		})

		t.Run("the file's tail cut", func(t *testing.T) {
			b, err := os.ReadFile(d.file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.SplitAfter(string(b), "\n")
			// Keep the lines up to the event at mid (and its checkpoint).
			var kept strings.Builder
			for _, l := range lines {
				kept.WriteString(l)
				if strings.Contains(l, fmt.Sprintf(`"sequence":%d,`, mid)) || strings.Contains(l, fmt.Sprintf(`"sequence":%d}`, mid)) {
					break
				}
			}
			if err := os.WriteFile(d.file, []byte(kept.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = d.verify(t)
			wantFinding(t, err, d.node, mid+1, "database", "not in the file")
			if err := os.WriteFile(d.file, b, 0o600); err != nil {
				t.Fatal(err)
			}
		})

		if _, err := d.verify(t); err != nil {
			t.Fatalf("verify with everything put back: %v", err)
		}
	})
}

// TestAuditTailCutSeenInRotatedFiles rotates the file sink (PATH.1 is the
// older half of the chain) and cuts the database back into the rotated
// file's range: verify reads every file of the set.
func TestAuditTailCutSeenInRotatedFiles(t *testing.T) {
	forEachTamperBackend(t, fileSink, func(t *testing.T, d *tamperDeployment) {
		d.n.Stop()
		rotatedHead := d.head(t)
		if err := os.Rename(d.file, d.file+".1"); err != nil {
			t.Fatal(err)
		}
		d.n.serve(d.s)
		d.traffic(t, 6)
		d.n.Stop()
		if _, err := d.verify(t); err != nil {
			t.Fatalf("verify of the rotated set: %v", err)
		}
		cps := d.checkpointSeqs(t)
		var keep uint64
		for _, c := range cps {
			if c < rotatedHead-2 {
				keep = c
			}
		}
		d.cutTail(t, keep)
		_, err := d.verify(t)
		wantFinding(t, err, d.node, keep+1, "file", "not in the database")
	})
}

// witnessServer is an audit witness over real HTTPS, written from the
// protocol alone: it takes signed checkpoints by POST (refusing a bad
// signature with 401), keeps the newest per node, and answers GET with
// them.
type witnessServer struct {
	srv    *httptest.Server
	url    string
	secret string
	caFile string
	down   atomic.Bool // answer 503 to every POST
	mu     sync.Mutex
	newest map[string]json.RawMessage
	seqs   map[string]uint64
	posts  int // accepted
}

func newWitnessServer(t *testing.T) *witnessServer {
	t.Helper()
	w := &witnessServer{secret: "witness-secret-" + t.Name(), newest: map[string]json.RawMessage{}, seqs: map[string]uint64{}}
	w.srv = httptest.NewTLSServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	w.url = w.srv.URL + "/coffer/checkpoints"
	w.caFile = filepath.Join(t.TempDir(), "witness-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.srv.Certificate().Raw})
	if err := os.WriteFile(w.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *witnessServer) serve(rw http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/coffer/checkpoints" {
		http.NotFound(rw, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		w.mu.Lock()
		out := []json.RawMessage{}
		for _, c := range w.newest {
			out = append(out, c)
		}
		w.mu.Unlock()
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(map[string]any{"checkpoints": out})
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(rw, "read", http.StatusBadRequest)
			return
		}
		if w.down.Load() {
			http.Error(rw, "down", http.StatusServiceUnavailable)
			return
		}
		if !detect.VerifySignature(w.secret, body, r.Header.Get(detect.HeaderSignature)) || r.Header.Get(detect.HeaderTimestamp) == "" {
			http.Error(rw, "bad signature", http.StatusUnauthorized)
			return
		}
		var c struct {
			Node string `json:"node"`
			Seq  uint64 `json:"seq"`
		}
		if err := json.Unmarshal(body, &c); err != nil || c.Node == "" || c.Seq == 0 {
			http.Error(rw, "not a checkpoint", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.posts++
		if c.Seq > w.seqs[c.Node] {
			w.seqs[c.Node], w.newest[c.Node] = c.Seq, body
		}
		w.mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	default:
		http.Error(rw, "method", http.StatusMethodNotAllowed)
	}
}

// settings point a deployment at the witness.
func (w *witnessServer) settings() map[string]string {
	return map[string]string{"audit.witness": w.url, "audit.witness_secret": w.secret, "audit.witness_ca_file": w.caFile}
}

// TestAuditTailCutSeenByTheWitness cuts the database back to a checkpoint,
// with no file sink: the witness, over HTTPS or in a file on another
// volume, still holds the newest signed checkpoint, and verify (with the
// configured witness, and with --witness naming it) names the cut.
func TestAuditTailCutSeenByTheWitness(t *testing.T) {
	for _, kind := range []string{"https", "file"} {
		t.Run(kind, func(t *testing.T) {
			forEachTamperBackend(t, func(t *testing.T, dir string, d *tamperDeployment) map[string]string {
				if kind == "file" {
					return map[string]string{"audit.witness": filepath.Join(dir, "witness", "checkpoints.jsonl")}
				}
				d.ws = newWitnessServer(t)
				return d.ws.settings()
			}, func(t *testing.T, d *tamperDeployment) {
				ws, target := d.ws, d.n.config(d.s).Audit.Witness
				d.n.Stop() // the final checkpoint goes to the witness
				if _, err := d.verify(t); err != nil {
					t.Fatalf("verify before tampering: %v", err)
				}
				if ws != nil {
					ws.mu.Lock()
					posts := ws.posts
					ws.mu.Unlock()
					if posts == 0 {
						t.Fatal("the witness took no signed checkpoint")
					}
				}
				head := d.head(t)
				cps := d.checkpointSeqs(t)
				if cps[len(cps)-1] != head {
					t.Fatalf("the last checkpoint is at %d, the head at %d", cps[len(cps)-1], head)
				}
				keep := cps[len(cps)-2]
				d.cutTail(t, keep)
				_, err := d.verify(t)
				wantFinding(t, err, d.node, head, "witness", "cut off")

				// The same through --witness, with the configuration naming none.
				s := setup{settings: map[string]string{"audit.checkpoint_every": "4", "audit.witness": "", "audit.witness_secret": ""}}
				cfg := d.n.config(s)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if _, err := app.VerifyAudit(ctx, cfg); err != nil {
					t.Fatalf("without a witness the cut is not visible, yet: %v", err)
				}
				cfg.Audit.WitnessCAFile = d.n.config(d.s).Audit.WitnessCAFile
				_, err = app.VerifyAuditAgainst(ctx, cfg, target)
				wantFinding(t, err, d.node, head, "witness", "cut off")
			})
		})
	}
}

// TestAuditWitnessLagMakesTheNodeNotReady: a node whose witness does not
// take its checkpoints for longer than audit.witness_max_lag says so in
// /readyz, its log and its metrics, and is ready again once the witness
// takes them.
func TestAuditWitnessLagMakesTheNodeNotReady(t *testing.T) {
	forEachTamperBackend(t, func(t *testing.T, _ string, d *tamperDeployment) map[string]string {
		d.ws = newWitnessServer(t)
		d.ws.down.Store(true)
		s := d.ws.settings()
		s["audit.witness_max_lag"] = "1m"
		return s
	}, func(t *testing.T, d *tamperDeployment) {
		ws := d.ws
		var ready struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		d.n.must(t, 200, "GET", "/readyz", "", nil, &ready)
		if ready.Checks["witness"] != "ok" {
			t.Fatalf("/readyz before the lag: %+v", ready)
		}
		d.n.Clock.Advance(2 * time.Minute)
		d.n.must(t, 503, "GET", "/readyz", "", nil, &ready)
		if ready.Checks["witness"] != "not ready" {
			t.Fatalf("/readyz with the witness 2m behind: %+v", ready)
		}
		if !strings.Contains(d.n.Logs.String(), "audit witness") {
			t.Error("the lag is not in the log")
		}
		m := d.n.scrapeMetrics(t)
		if !regexp.MustCompile(`(?m)^coffer_audit_witness_lag_seconds 1[2-9][0-9]`).MatchString(m) ||
			!regexp.MustCompile(`(?m)^coffer_audit_witness_failures_total [1-9]`).MatchString(m) {
			t.Errorf("witness metrics:\n%s", grepLines(m, "coffer_audit_witness"))
		}
		ws.down.Store(false)
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := d.n.call(t, "GET", "/readyz", "", nil)
			if r.status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still not ready after the witness came back: %s", r)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// scrapeMetrics serves the node's metrics on a loopback port and returns
// the /metrics text.
func (n *node) scrapeMetrics(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := n.Srv
	go func() { _ = srv.ServeMetrics(ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}
