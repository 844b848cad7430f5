package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/auditarchive"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestAuditArchive (#24): a serving node archives its sealed audit history
// on demand (POST /v1/admin/audit/archive), prunes it from the database,
// still verifies (online, and offline across archive and database as one
// chain), says which archived segments a listing reaches into, keeps
// chaining after a restart, and `coffer audit verify`'s walk names each
// fault of the archive: a truncated, edited, missing or foreign segment;
// an unwritable archive volume stops pruning with a 503 while the node
// keeps serving; a write cut short leaves no segment twice.
func TestAuditArchive(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "archive")
			n := start(t, b, "COFFER_AUDIT_ARCHIVE="+dir, "COFFER_AUDIT_CHECKPOINT_EVERY=20",
				"COFFER_AUDIT_ARCHIVE_SEGMENT_EVENTS=50", "COFFER_AUDIT_ARCHIVE_EVERY=24h")
			ctx := context.Background()
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			traffic := func(k int) {
				t.Helper()
				for range k {
					if st, _, body := n.do("GET", "/v1/collections", tok, "", nil); st != 200 {
						t.Fatalf("GET /v1/collections: %d %s", st, body)
					}
				}
			}
			archive := func(body string) (int, auditarchive.Result, string) {
				t.Helper()
				st, _, raw := n.do("POST", "/v1/admin/audit/archive", tok, "application/json", strings.NewReader(body))
				var res auditarchive.Result
				if st == 200 {
					if err := json.Unmarshal(raw, &res); err != nil {
						t.Fatal(err)
					}
				}
				return st, res, string(raw)
			}
			traffic(150)
			st, res, raw := archive(`{"before":"0s"}`)
			if st != 200 || len(res.Archived) < 2 || len(res.Pruned) < 1 || res.PrunedEvents < 50 {
				t.Fatalf("archive: %d %s", st, raw)
			}
			t.Logf("archived %d events in %d bytes: %.0f bytes/event", res.ArchivedEvents, res.Bytes, float64(res.Bytes)/float64(res.ArchivedEvents))
			// The SDK says the same (nothing new to do now).
			if r, err := n.Admin.ArchiveAudit(ctx, 0); err != nil || len(r.Archived) != 0 {
				t.Fatalf("client ArchiveAudit: %+v %v", r, err)
			}
			// Listing all time reaches into pruned history: it says where.
			st, _, body := n.do("GET", "/v1/audit/events?limit=5", tok, "", nil)
			var page struct {
				Events   []json.RawMessage `json:"events"`
				Archived []string          `json:"archived_segments"`
			}
			if st != 200 || json.Unmarshal(body, &page) != nil || len(page.Archived) != len(res.Pruned) || page.Archived[0] != res.Pruned[0] {
				t.Fatalf("events: %d %s (pruned %v)", st, body, res.Pruned)
			}
			// The database alone still verifies, online.
			st, _, body = n.do("POST", "/v1/audit/verify", tok, "", nil)
			if st != 200 || !strings.Contains(string(body), `"ok":true`) {
				t.Fatalf("verify online: %d %s", st, body)
			}
			// A restart chains on after the pruned history.
			n.Restart()
			tok = n.Token(n.Init.ClientID, n.Init.ClientSecret)
			traffic(30)
			if st, _, raw := archive(`{}`); st != 200 {
				t.Fatalf("archive with the default retention: %d %s", st, raw)
			}

			// An unwritable archive volume: 503, nothing pruned, serving on.
			nodeDir := filepath.Join(dir, url.PathEscape(n.Config().Node))
			if err := os.Rename(nodeDir, nodeDir+".away"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(nodeDir, []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
			traffic(60)
			if st, _, raw := archive(`{"before":"0s"}`); st != 503 || !strings.Contains(raw, "nothing more was pruned") {
				t.Fatalf("archive on a broken volume: %d %s", st, raw)
			}
			traffic(5)
			if !strings.Contains(n.Logs.String(), "audit archive failed") {
				t.Fatal("the failed archive run was not logged")
			}
			if err := os.Remove(nodeDir); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(nodeDir+".away", nodeDir); err != nil {
				t.Fatal(err)
			}
			// A write cut short (its temporary file left behind) is no
			// segment, and the next run goes on without duplicates.
			if err := os.WriteFile(filepath.Join(nodeDir, ".tmp-cutshort"), []byte("partial"), 0o600); err != nil {
				t.Fatal(err)
			}
			st, res, raw = archive(`{"before":"0s"}`)
			if st != 200 || len(res.Archived) == 0 {
				t.Fatalf("archive after the volume came back: %d %s", st, raw)
			}
			n.Stop()

			cfg := n.Config()
			verify := func() error {
				t.Helper()
				_, err := verifyArchive(ctx, cfg)
				return err
			}
			rep, err := verifyArchive(ctx, cfg)
			t.Logf("verified %+v", rep)
			if err != nil || rep.Segments < 3 || rep.Events < 240 {
				t.Fatalf("verify across archive and database: %+v %v", rep, err)
			}
			if _, err := app.VerifyAuditAgainst(ctx, cfg, ""); err != nil {
				t.Fatalf("coffer audit verify (database, file, witness): %v", err)
			}
			list, err := auditarchive.FileArchive{Dir: dir}.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint64]bool{}
			for _, in := range list {
				if in.Node == cfg.Node && seen[in.FirstSeq] {
					t.Fatalf("segment at seq %d twice: %+v", in.FirstSeq, list)
				}
				seen[in.FirstSeq] = true
			}
			var victim auditarchive.Info
			for _, in := range list {
				if in.Node == cfg.Node {
					victim = in
					break
				}
			}
			p := filepath.Join(nodeDir, filepath.Base(segFile(victim)))
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			restore := func() {
				t.Helper()
				if err := os.WriteFile(p, orig, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := verify(); err != nil {
					t.Fatalf("after restoring: %v", err)
				}
			}
			faults := []struct {
				name, want string
				do         func()
			}{
				{"truncated", "segment " + victim.ID + ": audit: segment file is", func() { archWrite(t, p, orig[:len(orig)/2]) }},
				{"missing", "segment missing", func() {
					if err := os.Remove(p); err != nil {
						t.Fatal(err)
					}
				}},
				{"edited", "hash does not match the event (edited)", func() {
					seg := archDecode(t, orig)
					seg.Events[3].Resource = "collections/elsewhere"
					archWrite(t, p, archEncode(t, seg))
				}},
				{"another deployment", "belongs to another deployment", func() {
					seg := archDecode(t, orig)
					seg.Header.Deployment = "another-deployment"
					archWrite(t, p, archEncode(t, seg))
				}},
			}
			for _, f := range faults {
				f.do()
				err := verify()
				var verr *audit.VerifyError
				if !asVerify(err, &verr) || verr.Node != cfg.Node || !strings.Contains(verr.Error(), f.want) {
					t.Errorf("%s: want a finding naming %q, got %v", f.name, f.want, err)
				}
				restore()
			}
		})
	}
}

// segFile is where a FileArchive keeps a segment (relative).
func segFile(in auditarchive.Info) string {
	return fmt.Sprintf("%020d-%020d.seg.gz", in.FirstSeq, in.LastSeq)
}

func archWrite(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func archDecode(t *testing.T, b []byte) *audit.Segment {
	t.Helper()
	s, err := audit.DecodeSegment(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func archEncode(t *testing.T, s *audit.Segment) []byte {
	t.Helper()
	b, err := audit.EncodeSegment(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func asVerify(err error, target **audit.VerifyError) bool {
	return err != nil && errors.As(err, target)
}

// verifyArchive runs what `coffer audit verify` runs across the archive
// and the database.
func verifyArchive(ctx context.Context, cfg *config.Config) (auditarchive.Report, error) {
	return app.AuditOffline(ctx, cfg, func(o auditadmin.Offline) (auditarchive.Report, error) {
		return auditadmin.VerifyArchive(ctx, o.DB, o.Keys, o.Audit, auditarchive.VerifyOptions{})
	})
}
