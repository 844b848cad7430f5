package attack

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/auditarchive"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// The class "tampering with archived history" (#24): once sealed segments
// of the audit log leave the database for the archive, an intruder may try
// to remove history under cover of archiving: delete events nobody
// archived (with the application's own access), record a segment as
// archived that never was and delete its events, or move segment files
// about in the archive. The database must refuse the first; `coffer audit
// verify`'s walk across the archive and the database (verifyArchive)
// must name the node, seq and segment of the others.

// archivedDeployment is a deployment that archived and pruned some of its
// audit history, stopped (its last checkpoint written).
type archivedDeployment struct {
	n       *node
	s       setup
	node    string
	dsn     string
	archive string
}

func withArchivedHistory(t *testing.T, fn func(t *testing.T, d *archivedDeployment)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "archive")
			s := setup{settings: map[string]string{"audit.archive": dir, "audit.checkpoint_every": "4",
				"audit.archive_segment_events": "8", "audit.archive_every": "24h"}}
			n := start(t, b, s)
			for range 40 {
				n.must(t, 200, "GET", "/v1/policy", n.admin, nil, nil)
			}
			var res auditarchive.Result
			n.must(t, 200, "POST", "/v1/admin/audit/archive", n.admin, map[string]string{"before": "0s"}, &res)
			if len(res.Pruned) < 2 {
				t.Fatalf("pruned %v", res.Pruned)
			}
			for range 10 {
				n.must(t, 200, "GET", "/v1/policy", n.admin, nil, nil)
			}
			n.Stop()
			cfg := n.config(s)
			_, dsn := cfg.Database()
			d := &archivedDeployment{n: n, s: s, node: cfg.Node, dsn: dsn, archive: dir}
			if _, err := d.verify(); err != nil {
				t.Fatalf("verify before tampering: %v", err)
			}
			fn(t, d)
		})
	}
}

func (d *archivedDeployment) verify() (auditarchive.Report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return verifyArchive(ctx, d.n.config(d.s))
}

// table is the table that holds the node's newest events: audit_log
// (the compact rows), or audit_events where the schema has no audit_log.
func (d *archivedDeployment) table(t *testing.T) string {
	t.Helper()
	var n int64
	if err := storetest.Raw(t, d.dsn).QueryRowContext(context.Background(), `SELECT count(*) FROM audit_log WHERE node = $1`, d.node).Scan(&n); err == nil && n > 0 {
		return "audit_log"
	}
	return "audit_events"
}

// head is the newest event's seq in the database.
func (d *archivedDeployment) head(t *testing.T) uint64 {
	t.Helper()
	var seq int64
	if err := storetest.Raw(t, d.dsn).QueryRowContext(context.Background(), `SELECT max(seq) FROM `+d.table(t)+` WHERE node = $1`, d.node).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return uint64(seq)
}

// TestArchivedHistoryTampering: each way of removing history under cover
// of the archive.
func TestArchivedHistoryTampering(t *testing.T) {
	withArchivedHistory(t, func(t *testing.T, d *archivedDeployment) {
		ctx := context.Background()
		head := d.head(t)
		t.Run("delete unarchived events with the app's access", func(t *testing.T) {
			db := storetest.Raw(t, d.dsn)
			_, err := db.ExecContext(ctx, `DELETE FROM `+d.table(t)+` WHERE node = $1 AND seq = $2`, d.node, int64(head))
			if err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("deleting an unarchived event: %v", err)
			}
			_, err = db.ExecContext(ctx, `UPDATE audit_segments SET last_seq = last_seq + 100 WHERE node = $1`, d.node)
			if err == nil {
				t.Fatal("a recorded segment was widened")
			}
			_, err = db.ExecContext(ctx, `DELETE FROM audit_segments WHERE node = $1`, d.node)
			if err == nil {
				t.Fatal("a recorded segment was deleted")
			}
		})
		t.Run("segment files moved about", func(t *testing.T) {
			list, err := auditarchive.FileArchive{Dir: d.archive}.List(ctx)
			if err != nil || len(list) < 2 {
				t.Fatalf("%v %v", list, err)
			}
			dir := filepath.Join(d.archive, url.PathEscape(d.node))
			a := filepath.Join(dir, fmt.Sprintf("%020d-%020d.seg.gz", list[0].FirstSeq, list[0].LastSeq))
			b := filepath.Join(dir, fmt.Sprintf("%020d-%020d.seg.gz", list[1].FirstSeq, list[1].LastSeq))
			ab, _ := os.ReadFile(a)
			bb, _ := os.ReadFile(b)
			if err := os.WriteFile(a, bb, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = d.verify()
			wantFinding(t, err, d.node, list[0].FirstSeq, "segment "+list[0].ID, "renamed or moved")
			if err := os.WriteFile(a, ab, 0o600); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("a segment recorded as archived that never was", func(t *testing.T) {
			// The intruder records the next unarchived stretch as a
			// verified, pruned segment, ending at a signed checkpoint, and
			// deletes its events: the database alone cannot tell.
			db := storetest.Raw(t, d.dsn)
			var first, last int64
			var hash string
			if err := db.QueryRowContext(ctx, `SELECT max(last_seq) + 1 FROM audit_segments WHERE node = $1`, d.node).Scan(&first); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_checkpoints WHERE node = $1 AND seq > $2 AND seq < $3 ORDER BY seq LIMIT 1`,
				d.node, first, int64(head)).Scan(&last, &hash); err != nil {
				t.Fatal(err)
			}
			var prev string
			if err := db.QueryRowContext(ctx, `SELECT head_hash FROM audit_segments WHERE node = $1 ORDER BY last_seq DESC LIMIT 1`, d.node).Scan(&prev); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO audit_segments (node, first_seq, last_seq, prev_hash, head_hash, first_time, last_time, bytes, verified_at, pruned_at)
				VALUES ($1, $2, $3, $4, $5, 1, 1, 1, 1, 1)`, d.node, first, last, prev, hash); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `DELETE FROM `+d.table(t)+` WHERE node = $1 AND seq BETWEEN $2 AND $3`, d.node, first, last); err != nil {
				t.Fatal(err)
			}
			_, err := d.verify()
			wantFinding(t, err, d.node, uint64(first), "segment missing")
		})
	})
}

// verifyArchive runs what `coffer audit verify` runs across the archive
// and the database.
func verifyArchive(ctx context.Context, cfg *config.Config) (auditarchive.Report, error) {
	return app.AuditOffline(ctx, cfg, func(o auditadmin.Offline) (auditarchive.Report, error) {
		return auditadmin.VerifyArchive(ctx, o.DB, o.Keys, o.Audit, auditarchive.VerifyOptions{})
	})
}
