package auditarchive_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auditarchive"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

var (
	hmacKey = []byte("archive-test-hmac-key-32-bytes-x")
	signKey = ed25519.NewKeyFromSeed([]byte("archive-test-signing-seed-32byte"))
	keys    = audit.Keys{HMACVersion: 1, HMACKey: hmacKey, SigningVersion: 1, SigningKey: signKey}
	lookup  = audit.KeyVersions{HMAC: map[uint32][]byte{1: hmacKey},
		Public: map[uint32]ed25519.PublicKey{1: signKey.Public().(ed25519.PublicKey)}}
	base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

const deployment = "dep-test"

// clock is a time that moves a millisecond each time it is read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// fixture is a store holding node n1's chain of events, and an archive.
type fixture struct {
	db   *store.DB
	st   audit.Rows
	arch auditarchive.FileArchive
	clk  *clock
}

func newFixture(t *testing.T, b storetest.Backend, events int) *fixture {
	t.Helper()
	db := storetest.Open(t, b)
	f := &fixture{db: db, st: audit.OnRows(db), arch: auditarchive.FileArchive{Dir: t.TempDir()}, clk: &clock{t: base}}
	f.write(t, events)
	return f
}

// write appends n events to n1's chain (checkpoints every 100 and at the
// end).
func (f *fixture) write(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	w, err := audit.NewWriter(ctx, f.st, audit.WriterConfig{Node: "n1", Keys: keys, CheckpointEvery: 100, Now: f.clk.Now,
		GatherGap: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Log(ctx, audit.Event{PrincipalID: "client-" + string(rune('a'+i%3)), PrincipalKind: "client",
			Action: "read", Resource: "collections/c", Decision: audit.DecisionAllow, Status: 200, Count: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) archiver(arch auditarchive.Archive, st auditarchive.Store, log func(context.Context, audit.Event) error) *auditarchive.Archiver {
	if st == nil {
		st = archStore{f.st, f.db}
	}
	return auditarchive.New(auditarchive.Config{Store: st, Archive: arch, Keys: lookup, Deployment: deployment,
		Holder: "n1", Now: f.clk.Now, MaxSegmentEvents: 300, Log: log})
}

// archStore is the store as the archiver needs it: events through the
// audit log's Rows, segments and leases from the database.
type archStore struct {
	audit.Rows
	*store.DB
}

func (s archStore) AuditNodes(ctx context.Context) ([]string, error) { return s.Rows.AuditNodes(ctx) }
func (s archStore) AuditHead(ctx context.Context, n string) (uint64, string, error) {
	return s.Rows.AuditHead(ctx, n)
}
func (s archStore) Checkpoints(ctx context.Context, n string) ([]audit.Checkpoint, error) {
	return s.Rows.Checkpoints(ctx, n)
}
func (s archStore) AuditPrunedThrough(ctx context.Context, n string) (uint64, string, error) {
	return s.DB.AuditPrunedThrough(ctx, n)
}

func later() time.Time { return base.Add(time.Hour) }

func TestArchivePruneVerify(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, b, 1000)
			var logged []audit.Event
			res, err := f.archiver(f.arch, nil, func(_ context.Context, e audit.Event) error {
				logged = append(logged, e)
				return nil
			}).Run(ctx, later())
			if err != nil {
				t.Fatal(err)
			}
			// 1000 events, a checkpoint every 100, at most 300 a segment.
			want := []string{"n1:1-300", "n1:301-600", "n1:601-900", "n1:901-1000"}
			if strings.Join(res.Archived, ",") != strings.Join(want, ",") || res.ArchivedEvents != 1000 {
				t.Fatalf("archived %v (%d events), want %v", res.Archived, res.ArchivedEvents, want)
			}
			// The head's segment stays in the database.
			if strings.Join(res.Pruned, ",") != "n1:1-300,n1:301-600,n1:601-900" || res.PrunedEvents != 900 {
				t.Fatalf("pruned %v (%d)", res.Pruned, res.PrunedEvents)
			}
			if len(logged) != 3 || logged[0].Action != "prune" || logged[0].Targets[0] != "audit/segments/n1:1-300" {
				t.Fatalf("prune events %+v", logged)
			}
			if seq, _, _ := f.db.AuditPrunedThrough(ctx, "n1"); seq != 900 {
				t.Fatalf("pruned through %d", seq)
			}
			// The database alone verifies from its signed boundary.
			if rep, err := audit.Verify(ctx, f.st, lookup); err != nil || rep.Events != 100 {
				t.Fatalf("database verify: %+v %v", rep, err)
			}
			// Archive and database verify as one chain.
			rep, err := auditarchive.Verify(ctx, f.arch, f.st, lookup, deployment, auditarchive.VerifyOptions{})
			if err != nil || rep.Events != 1000 || rep.Segments != 4 {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			// The chain goes on after a prune; a second run is idempotent.
			f.write(t, 50)
			res, err = f.archiver(f.arch, nil, nil).Run(ctx, later())
			if err != nil || len(res.Archived) != 1 || res.Archived[0] != "n1:1001-1050" {
				t.Fatalf("second run: %+v %v", res, err)
			}
			if rep, err := auditarchive.Verify(ctx, f.arch, f.st, lookup, deployment, auditarchive.VerifyOptions{}); err != nil || rep.Events != 1050 {
				t.Fatalf("verify after more: %+v %v", rep, err)
			}
			// Ranges.
			rep, err = auditarchive.Verify(ctx, f.arch, nil, lookup, deployment, auditarchive.VerifyOptions{Segments: []string{"n1:301-600"}})
			if err != nil || rep.Events != 300 {
				t.Fatalf("verify --segments: %+v %v", rep, err)
			}
			// --since: from the first segment reaching the time on.
			segs, _ := f.db.AuditSegments(ctx, "n1")
			rep, err = auditarchive.Verify(ctx, f.arch, f.st, lookup, deployment, auditarchive.VerifyOptions{Since: segs[2].LastTime})
			if err != nil || rep.Segments != 3 || rep.Events != 1050-600 {
				t.Fatalf("verify --since: %+v %v", rep, err)
			}
			// Search reads archived history directly.
			var n int
			if err := auditarchive.Search(ctx, f.arch, auditarchive.Query{Principal: "client-a"}, func(audit.Event) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			// client-a is every third event of each writer run: 334 of the
			// first 1000, 17 of the next 50.
			if n != 334+17 {
				t.Fatalf("search found %d events of client-a", n)
			}
		})
	}
}

// segPath returns the file of segment id in a FileArchive.
func segPath(t *testing.T, a auditarchive.FileArchive, id string) string {
	t.Helper()
	node, first, last, err := audit.ParseSegmentID(id)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(a.Dir, node, strings.Repeat("0", 20-len(itoa(first)))+itoa(first)+"-"+strings.Repeat("0", 20-len(itoa(last)))+itoa(last)+".seg.gz")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

// wantFinding checks that err is a finding at node n1, seq, mentioning what.
func wantFinding(t *testing.T, err error, seq uint64, what string) {
	t.Helper()
	var verr *audit.VerifyError
	if !errors.As(err, &verr) {
		t.Fatalf("want a finding at seq %d about %q, got %v", seq, what, err)
	}
	if verr.Node != "n1" || verr.Seq != seq || !strings.Contains(verr.Error(), what) {
		t.Fatalf("want a finding at seq %d about %q, got %v", seq, what, verr)
	}
}

func TestArchiveFaults(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends() {
		setup := func(t *testing.T) *fixture {
			f := newFixture(t, b, 1000)
			if _, err := f.archiver(f.arch, nil, nil).Run(ctx, later()); err != nil {
				t.Fatal(err)
			}
			return f
		}
		verify := func(f *fixture) error {
			_, err := auditarchive.Verify(ctx, f.arch, f.st, lookup, deployment, auditarchive.VerifyOptions{})
			return err
		}
		t.Run(b.Name+"/truncated", func(t *testing.T) {
			f := setup(t)
			p := segPath(t, f.arch, "n1:301-600")
			data, _ := os.ReadFile(p)
			if err := os.WriteFile(p, data[:len(data)/2], 0o600); err != nil {
				t.Fatal(err)
			}
			wantFinding(t, verify(f), 301, "segment n1:301-600")
		})
		t.Run(b.Name+"/truncated-at-record-boundary-and-regzipped", func(t *testing.T) {
			f := setup(t)
			p := segPath(t, f.arch, "n1:301-600")
			raw := gunzip(t, p)
			regzip(t, p, raw[:len(raw)*2/3])
			wantFinding(t, verify(f), 301, "segment n1:301-600")
		})
		t.Run(b.Name+"/edited", func(t *testing.T) {
			f := setup(t)
			p := segPath(t, f.arch, "n1:301-600")
			// Another principal for one event, the file well formed again.
			data, _ := os.ReadFile(p)
			seg, err := audit.DecodeSegment(data)
			if err != nil {
				t.Fatal(err)
			}
			seg.Events[1].PrincipalID = "client-z"
			edited, err := audit.EncodeSegment(seg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, edited, 0o600); err != nil {
				t.Fatal(err)
			}
			wantFinding(t, verify(f), 302, "hash does not match the event (edited)")
		})
		t.Run(b.Name+"/missing", func(t *testing.T) {
			f := setup(t)
			if err := os.Remove(segPath(t, f.arch, "n1:301-600")); err != nil {
				t.Fatal(err)
			}
			wantFinding(t, verify(f), 301, "segment missing")
		})
		t.Run(b.Name+"/missing-last-archived", func(t *testing.T) {
			f := setup(t)
			if err := os.Remove(segPath(t, f.arch, "n1:601-900")); err != nil {
				t.Fatal(err)
			}
			// The database pruned through 900: it says what is missing.
			wantFinding(t, verify(f), 601, "segment missing")
		})
		t.Run(b.Name+"/another-deployment", func(t *testing.T) {
			f := setup(t)
			other := newFixture(t, b, 1000)
			other2 := auditarchive.New(auditarchive.Config{Store: archStore{other.st, other.db}, Archive: other.arch, Keys: lookup,
				Deployment: "dep-other", Holder: "n1", Now: other.clk.Now, MaxSegmentEvents: 300})
			if _, err := other2.Run(ctx, later()); err != nil {
				t.Fatal(err)
			}
			// Same keys even: the header names the deployment.
			data, _ := os.ReadFile(segPath(t, other.arch, "n1:301-600"))
			if err := os.WriteFile(segPath(t, f.arch, "n1:301-600"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			wantFinding(t, verify(f), 301, "another deployment")
		})
		t.Run(b.Name+"/full-volume", func(t *testing.T) {
			f := newFixture(t, b, 1000)
			full := &faultArchive{Archive: f.arch, putErr: syscall.ENOSPC}
			_, err := f.archiver(full, nil, nil).Run(ctx, later())
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("run on a full volume: %v", err)
			}
			// Nothing pruned, nothing recorded; the log still takes events.
			if seq, _, _ := f.db.AuditPrunedThrough(ctx, "n1"); seq != 0 {
				t.Fatalf("pruned through %d on a full volume", seq)
			}
			f.write(t, 10)
			if rep, err := audit.Verify(ctx, f.st, lookup); err != nil || rep.Events != 1010 {
				t.Fatalf("%+v %v", rep, err)
			}
			// Space again: the next run archives everything.
			full.putErr = nil
			if res, err := f.archiver(full, nil, nil).Run(ctx, later()); err != nil || res.PrunedEvents != 900 {
				t.Fatalf("%+v %v", res, err)
			}
			if err := verify(f); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(b.Name+"/crash-mid-archive", func(t *testing.T) {
			f := newFixture(t, b, 1000)
			// The second segment's file is written, then the process dies
			// before the database records it.
			crash := &faultArchive{Archive: f.arch, crashAfterPut: 2}
			if _, err := f.archiver(crash, nil, nil).Run(ctx, later()); !errors.Is(err, errCrash) {
				t.Fatalf("want the crash, got %v", err)
			}
			segs, _ := f.db.AuditSegments(ctx, "n1")
			if len(segs) != 1 {
				t.Fatalf("%d segments recorded before the crash", len(segs))
			}
			res, err := f.archiver(f.arch, nil, nil).Run(ctx, later())
			if err != nil || strings.Join(res.Adopted, ",") != "n1:301-600" {
				t.Fatalf("resume: %+v %v", res, err)
			}
			list, _ := f.arch.List(ctx)
			if len(list) != 4 {
				t.Fatalf("archive holds %d segments, want 4 (none lost, none twice): %+v", len(list), list)
			}
			if err := verify(f); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(b.Name+"/crash-mid-prune", func(t *testing.T) {
			f := newFixture(t, b, 1000)
			st := &faultStore{archStore: archStore{f.st, f.db}, failPrune: 2}
			if _, err := f.archiver(f.arch, st, nil).Run(ctx, later()); !errors.Is(err, errCrash) {
				t.Fatalf("want the crash, got %v", err)
			}
			if seq, _, _ := f.db.AuditPrunedThrough(ctx, "n1"); seq != 300 {
				t.Fatalf("pruned through %d after the crash", seq)
			}
			// Mid-way, the database and the archive still verify.
			if err := verify(f); err != nil {
				t.Fatal(err)
			}
			res, err := f.archiver(f.arch, nil, nil).Run(ctx, later())
			if err != nil || len(res.Archived) != 0 || strings.Join(res.Pruned, ",") != "n1:301-600,n1:601-900" {
				t.Fatalf("resume: %+v %v", res, err)
			}
			if err := verify(f); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(b.Name+"/prune-refused-when-its-event-fails", func(t *testing.T) {
			f := newFixture(t, b, 1000)
			_, err := f.archiver(f.arch, nil, func(context.Context, audit.Event) error { return errors.New("audit down") }).Run(ctx, later())
			if err == nil {
				t.Fatal("pruned without its audit event")
			}
			if seq, _, _ := f.db.AuditPrunedThrough(ctx, "n1"); seq != 0 {
				t.Fatalf("pruned through %d", seq)
			}
		})
	}
}

func gunzip(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func regzip(t *testing.T, p string, raw []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

var errCrash = errors.New("simulated crash")

// faultArchive fails Put with putErr, or writes the crashAfterPut'th
// segment and then fails as a process dying would.
type faultArchive struct {
	auditarchive.Archive
	putErr        error
	crashAfterPut int
	puts          int
}

func (a *faultArchive) Put(ctx context.Context, id string, data []byte) error {
	if a.putErr != nil {
		return a.putErr
	}
	a.puts++
	if err := a.Archive.Put(ctx, id, data); err != nil {
		return err
	}
	if a.puts == a.crashAfterPut {
		return errCrash
	}
	return nil
}

// faultStore fails the failPrune'th prune, before it touches anything.
type faultStore struct {
	archStore
	failPrune, prunes int
}

func (s *faultStore) PruneAuditSegment(ctx context.Context, l coffer.JobLease, now time.Time, node string, first uint64) (int64, error) {
	s.prunes++
	if s.prunes == s.failPrune {
		return 0, errCrash
	}
	return s.archStore.DB.PruneAuditSegment(ctx, l, now, node, first)
}

func TestFileArchivePutIsIdempotentAndNeverOverwrites(t *testing.T) {
	ctx := context.Background()
	a := auditarchive.FileArchive{Dir: t.TempDir()}
	if err := a.Put(ctx, "n1/offline:1-5", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "n1/offline:1-5", []byte("one")); err != nil {
		t.Fatalf("the same segment again: %v", err)
	}
	if err := a.Put(ctx, "n1/offline:1-5", []byte("two")); !errors.Is(err, auditarchive.ErrConflict) {
		t.Fatalf("other bytes under the same id: %v", err)
	}
	if b, err := a.Get(ctx, "n1/offline:1-5"); err != nil || string(b) != "one" {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := a.Get(ctx, "n1:1-5"); !errors.Is(err, auditarchive.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	for _, bad := range []string{"..:1-5", ".:1-2", "n1:0-3", "n1:5-3", "n1", "n1:x-y"} {
		if err := a.Put(ctx, bad, []byte("x")); err == nil {
			t.Errorf("Put %q: no error", bad)
		}
	}
	list, err := a.List(ctx)
	if err != nil || len(list) != 1 || list[0].Node != "n1/offline" || list[0].Bytes != 3 {
		t.Fatalf("%+v %v", list, err)
	}
}
