package attack

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
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
	n     *node
	s     setup
	node  string  // the serving node's chain
	db    *sql.DB // the intruder's connection
	file  string  // audit.file, "" when not configured
	extra map[string]string
}

// forEachTamperBackend runs fn on a fresh deployment per backend, served
// with checkpoints every 4 events and the settings settings returns (given
// a directory of the test's own), after some audited traffic.
func forEachTamperBackend(t *testing.T, settings func(t *testing.T, dir string) map[string]string, fn func(t *testing.T, d *tamperDeployment)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := setup{settings: map[string]string{"audit.checkpoint_every": "4"}}
			for k, v := range settings(t, dir) {
				s.settings[k] = v
			}
			n := start(t, b, s)
			cfg := n.config(s)
			d := &tamperDeployment{n: n, s: s, node: cfg.Node, file: cfg.Audit.File}
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
	if err := d.db.QueryRowContext(context.Background(), `SELECT max(seq) FROM audit_events WHERE node = $1`, d.node).Scan(&seq); err != nil {
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
	if n := d.exec(t, `DELETE FROM audit_events WHERE node = $1 AND seq > $2`, d.node, int64(keep)); n == 0 {
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
func fileSink(_ *testing.T, dir string) map[string]string {
	return map[string]string{"audit.file": dir + "/audit.jsonl"}
}

// TestAuditColumnTampering edits, one at a time, every column stored
// beside an event's hashed body: audit verify must name the event and the
// column, and, the edit undone, say ok again.
func TestAuditColumnTampering(t *testing.T) {
	forEachTamperBackend(t, func(*testing.T, string) map[string]string { return nil }, func(t *testing.T, d *tamperDeployment) {
		d.n.stop() // the final checkpoint is written
		if _, err := d.verify(t); err != nil {
			t.Fatalf("verify before tampering: %v", err)
		}
		const seq = 5
		for _, c := range []struct{ column, value string }{
			{"principal", "someone-else"},
			{"action", "delete"},
			{"time", "1"},
			{"id", "x:5"},
			{"hash", strings.Repeat("0", 64)},
			{"prev_hash", strings.Repeat("0", 64)},
		} {
			t.Run(c.column, func(t *testing.T) {
				var old any
				q := fmt.Sprintf(`SELECT %s FROM audit_events WHERE node = $1 AND seq = $2`, c.column)
				if err := d.db.QueryRowContext(context.Background(), q, d.node, seq).Scan(&old); err != nil {
					t.Fatal(err)
				}
				set := fmt.Sprintf(`UPDATE audit_events SET %s = $1 WHERE node = $2 AND seq = $3`, c.column)
				var v any = c.value
				if c.column == "time" {
					v = int64(1)
				}
				if n := d.exec(t, set, v, d.node, seq); n != 1 {
					t.Fatalf("edit %s: %d rows", c.column, n)
				}
				_, err := d.verify(t)
				wantFinding(t, err, d.node, seq, c.column)
				d.exec(t, set, old, d.node, seq)
				if _, err := d.verify(t); err != nil {
					t.Fatalf("verify after undoing the %s edit: %v", c.column, err)
				}
			})
		}
	})
}

// TestAuditColumnTamperingHidesNothingFromTheAPI relabels events through
// the columns the events API filters on (principal, action, time): a row
// whose column disagrees with its body is never served as matching the
// filter, and the server flags it (log and metric).
func TestAuditColumnTamperingHidesNothingFromTheAPI(t *testing.T) {
	forEachTamperBackend(t, func(*testing.T, string) map[string]string { return nil }, func(t *testing.T, d *tamperDeployment) {
		// Event 5 is the admin's "read policy"; the intruder makes it look
		// like mallory's, like a "delete", and like one from the future.
		d.exec(t, `UPDATE audit_events SET principal = 'mallory' WHERE node = $1 AND seq = 5`, d.node)
		d.exec(t, `UPDATE audit_events SET action = 'delete' WHERE node = $1 AND seq = 6`, d.node)
		future := time.Now().Add(24 * time.Hour)
		d.exec(t, `UPDATE audit_events SET time = $1 WHERE node = $2 AND seq = 7`, future.UnixMicro(), d.node)
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
		logs := d.n.logs.String()
		for _, seq := range []string{`"seq":5`, `"seq":6`, `"seq":7`} {
			if !strings.Contains(logs, "audit row's columns disagree with its hashed body") || !strings.Contains(logs, seq) {
				t.Errorf("the server did not flag the edited row (%s) in its log", seq)
			}
		}
		if !strings.Contains(d.n.scrapeMetrics(t), "coffer_audit_row_mismatches_total 3") {
			t.Error("coffer_audit_row_mismatches_total is not 3")
		}
	})
}

// scrapeMetrics serves the node's metrics on a loopback port and returns
// the /metrics text.
func (n *node) scrapeMetrics(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := n.srv
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
