package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/config"
)

// execSQL runs statements on n's database directly, as its owner could.
func (n *node) execSQL(stmts ...string) {
	n.t.Helper()
	ctx := context.Background()
	kind, dsn := n.Config().Database()
	if kind == config.DatabaseSQLite {
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			n.t.Fatal(err)
		}
		defer db.Close()
		for _, s := range stmts {
			if _, err := db.ExecContext(ctx, s); err != nil {
				n.t.Fatalf("%s: %v", s, err)
			}
		}
		return
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		n.t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			n.t.Fatalf("%s: %v", s, err)
		}
	}
}

// breakAuditAppends makes every insert into audit_log fail, while the
// rest of the database takes writes: the audit append fails after the
// data write committed. The returned func mends it.
func (n *node) breakAuditAppends() (mend func()) {
	n.t.Helper()
	if n.Backend == "sqlite" {
		n.execSQL(`CREATE TRIGGER audit_test_outage BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit test outage'); END`)
		return func() { n.execSQL(`DROP TRIGGER audit_test_outage`) }
	}
	n.execSQL(`CREATE FUNCTION audit_test_outage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit test outage'; END $$`,
		`CREATE TRIGGER audit_test_outage BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_test_outage()`)
	return func() {
		n.execSQL(`DROP TRIGGER audit_test_outage ON audit_log`, `DROP FUNCTION audit_test_outage()`)
	}
}

// metric returns the value of an unlabelled metric in n's /metrics.
func (n *node) metric(name string) float64 {
	n.t.Helper()
	for _, line := range strings.Split(n.scrapeMetrics(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if err := json.Unmarshal([]byte(v), &f); err != nil {
				n.t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	n.t.Fatalf("no %s in the metrics", name)
	return 0
}

// TestAuditAppendFailsAfterTheWrite: when the audit append fails after a
// request's write committed (the store refuses audit rows only), the write
// stays done and its caller gets a 503, the failure is counted in
// coffer_audit_write_failures_total and logged with the request's id and
// target, and the node turns not ready and refuses every audited request
// before acting on it, so no further write goes unrecorded. Once appends
// work again the node recovers on its own, and the first event it writes
// records the outage and how many events it cost; the chain verifies.
func TestAuditAppendFailsAfterTheWrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		if st, _, b := n.postJSON("/v1/collections", tok, map[string]any{"name": "c",
			"fields": []map[string]any{{"name": "note", "type": "string"}}}); st != 201 {
			t.Fatalf("create collection: %d %s", st, b)
		}
		db := n.openStore()
		records := func() int {
			recs, err := db.RecordsAfter(ctx, "c", "", 100)
			if err != nil {
				t.Fatal(err)
			}
			k := 0
			for _, r := range recs {
				if r.Collection == "c" {
					k++
				}
			}
			return k
		}
		create := func() (int, http.Header, []byte) {
			return n.postJSON("/v1/collections/c/records", tok, map[string]any{"data": map[string]any{"note": "n"}})
		}
		if st, _, b := create(); st != 201 {
			t.Fatalf("create record: %d %s", st, b)
		}
		failures := n.metric("coffer_audit_write_failures_total")

		mend := n.breakAuditAppends()
		st, h, b := create()
		if st != 503 || !strings.Contains(string(b), "audit log unavailable; request not answered") {
			t.Fatalf("create with audit appends failing: %d %s", st, b)
		}
		if got := records(); got != 2 {
			t.Fatalf("%d records stored; the write whose audit append failed is committed, want 2", got)
		}
		rid := h.Get("X-Request-Id")
		if !strings.Contains(n.Logs.String(), "the request's outcome is not in the audit log") ||
			!strings.Contains(n.Logs.String(), rid) {
			t.Fatalf("no error log names request %s", rid)
		}
		if got := n.metric("coffer_audit_write_failures_total"); got <= failures {
			t.Fatalf("coffer_audit_write_failures_total = %v, was %v: the failure is not counted", got, failures)
		}
		if st, _, b := n.do("GET", "/readyz", "", "", nil); st != 503 || !strings.Contains(string(b), `"audit":"not ready"`) {
			t.Fatalf("readyz with audit appends failing: %d %s", st, b)
		}
		// Fail closed: refused before the handler, nothing written.
		for range 3 {
			st, _, b := create()
			if st != 503 || !strings.Contains(string(b), "request not carried out") {
				t.Fatalf("create while the audit log is down: %d %s", st, b)
			}
		}
		if st, _, b := n.do("GET", "/v1/collections/c", tok, "", nil); st != 503 {
			t.Fatalf("read while the audit log is down: %d %s", st, b)
		}
		if got := records(); got != 2 {
			t.Fatalf("%d records stored after refused creates, want 2", got)
		}

		mend()
		deadline := time.Now().Add(time.Minute)
		for {
			st, _, _ := n.do("GET", "/readyz", "", "", nil)
			if st == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the node did not become ready again after audit appends were mended")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if st, _, b := create(); st != 201 {
			t.Fatalf("create after recovery: %d %s", st, b)
		}
		var outage []audit.Event
		err := audit.OnRows(db).ScanAudit(ctx, n.Config().Node, 0, func(e audit.Event) error {
			if e.Action == audit.ActionOutage {
				outage = append(outage, e)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(outage) != 1 || outage[0].Count != 1 || !strings.Contains(outage[0].Reason, "up to 1 events") {
			t.Fatalf("outage events: %+v; want one counting the 1 event lost", outage)
		}
		n.Stop()
		if got, err := app.VerifyAudit(ctx, n.Config()); err != nil || got == 0 {
			t.Fatalf("audit verify: %d, %v", got, err)
		}
	})
}
