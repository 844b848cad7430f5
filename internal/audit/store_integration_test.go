package audit_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

var (
	hmacKey = []byte("integration-hmac-key-32-bytes-xx")
	signKey = ed25519.NewKeyFromSeed([]byte("integration-signing-seed-32bytes"))
	quiet   = slog.New(slog.NewTextHandler(io.Discard, nil))
	// keys is version 1 of both audit keys; lookup finds them for Verify.
	keys   = audit.Keys{HMACVersion: 1, HMACKey: hmacKey, SigningVersion: 1, SigningKey: signKey}
	lookup = audit.KeyVersions{HMAC: map[uint32][]byte{1: hmacKey},
		Public: map[uint32]ed25519.PublicKey{1: signKey.Public().(ed25519.PublicKey)}}
)

// TestWriterOnRealStores runs the writer and Verify on SQLite and
// PostgreSQL (skipped when unreachable outside CI): the stored JSON body
// must decode to exactly the chained event.
func TestWriterOnRealStores(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := audit.OnRows(storetest.Open(t, b))
			ctx := context.Background()
			w, err := audit.NewWriter(ctx, db, audit.WriterConfig{
				Node: "n1", Keys: keys, CheckpointEvery: 50, Logger: quiet,
			})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for g := range 20 {
				wg.Go(func() {
					for i := range 10 {
						e := audit.Event{PrincipalID: "client-1", PrincipalKind: "client", Roles: []string{"admin"},
							Action: "read", Resource: "collections/customers", Fields: []string{"email"},
							Decision: audit.DecisionAllow, Rule: "admin#0", Status: 200, Count: g*10 + i,
							Reason: "ünïcode ok"}
						if err := w.Log(ctx, e); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := audit.Verify(ctx, db, lookup)
			if err != nil || rep.Events != 200 || rep.Checkpoints != 4 {
				t.Fatalf("Verify = %+v, %v; want 200 events and 4 checkpoints", rep, err)
			}
			events, err := db.ListAudit(ctx, audit.Filter{Principal: "client-1", Limit: 5})
			if err != nil || len(events) != 5 {
				t.Fatalf("ListAudit = %d events, %v", len(events), err)
			}
			// A duplicate (node, seq) must fail the whole append.
			dup := events[0]
			if err := db.AppendAudit(ctx, []audit.Event{dup}, nil); err == nil {
				t.Fatal("the store accepted a duplicate (node, seq)")
			}
			if _, err := audit.Verify(ctx, db, lookup); err != nil {
				t.Fatalf("Verify after a refused duplicate: %v", err)
			}
			// An event and a checkpoint go in together or not at all, whichever
			// of the two collides (on PostgreSQL they share one statement).
			cps, err := db.Checkpoints(ctx, "n1")
			if err != nil || len(cps) == 0 {
				t.Fatalf("Checkpoints = %d, %v", len(cps), err)
			}
			fresh := dup
			fresh.Seq, fresh.ID = 10_000, audit.EventID("n1", 10_000)
			newCP := cps[0]
			newCP.Seq = 10_000
			for name, tc := range map[string]struct {
				events []audit.Event
				cps    []audit.Checkpoint
			}{
				"new event, existing checkpoint": {[]audit.Event{fresh}, []audit.Checkpoint{cps[0]}},
				"existing event, new checkpoint": {[]audit.Event{dup}, []audit.Checkpoint{newCP}},
			} {
				if err := db.AppendAudit(ctx, tc.events, tc.cps); err == nil {
					t.Fatalf("%s: the append succeeded", name)
				}
				head, _, err := db.AuditHead(ctx, "n1")
				if err != nil || head != 200 {
					t.Fatalf("%s: head = %d, %v; want 200 (nothing of the append stored)", name, head, err)
				}
				if got, err := db.Checkpoints(ctx, "n1"); err != nil || len(got) != len(cps) {
					t.Fatalf("%s: %d checkpoints, %v; want %d", name, len(got), err, len(cps))
				}
			}
		})
	}
}

// versionedKeys is a KeySource whose current versions a test moves on,
// keeping every version for Verify.
type versionedKeys struct {
	mu           sync.Mutex
	hmacV, signV uint32
}

func (k *versionedKeys) rotate(hmac, sign bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if hmac {
		k.hmacV++
	}
	if sign {
		k.signV++
	}
}

func versionKey(label string, v uint32) []byte { return []byte(fmt.Sprintf("%-28s%04d", label, v)) }

func (k *versionedKeys) CurrentKeys(context.Context) (audit.Keys, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return audit.Keys{HMACVersion: k.hmacV, HMACKey: versionKey("hmac", k.hmacV),
		SigningVersion: k.signV, SigningKey: ed25519.NewKeyFromSeed(versionKey("signing", k.signV))}, nil
}

func (k *versionedKeys) lookup() audit.KeyVersions {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := audit.KeyVersions{HMAC: map[uint32][]byte{}, Public: map[uint32]ed25519.PublicKey{}}
	for v := uint32(1); v <= k.hmacV; v++ {
		out.HMAC[v] = versionKey("hmac", v)
	}
	for v := uint32(1); v <= k.signV; v++ {
		out.Public[v] = ed25519.NewKeyFromSeed(versionKey("signing", v)).Public().(ed25519.PublicKey)
	}
	return out
}

// TestWriterRotatesOnRealStores rotates both audit keys while concurrent
// writers log, restarts the writer, and verifies the stored chain (bodies
// and checkpoint columns) on SQLite and PostgreSQL.
func TestWriterRotatesOnRealStores(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := audit.OnRows(storetest.Open(t, b))
			ctx := context.Background()
			keys := &versionedKeys{hmacV: 1, signV: 1}
			logSome := func(w *audit.Writer) {
				var wg sync.WaitGroup
				for range 5 {
					wg.Go(func() {
						for range 10 {
							if err := w.Log(ctx, audit.Event{PrincipalID: "client-1", Action: "read", Status: 200}); err != nil {
								t.Error(err)
							}
						}
					})
				}
				wg.Wait()
			}
			w, err := audit.NewWriter(ctx, db, audit.WriterConfig{Node: "n1", Keys: keys, CheckpointEvery: 20, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			logSome(w)
			keys.rotate(true, false)
			logSome(w)
			keys.rotate(false, true)
			logSome(w)
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			keys.rotate(true, true)
			w, err = audit.NewWriter(ctx, db, audit.WriterConfig{Node: "n1", Keys: keys, CheckpointEvery: 20, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			logSome(w)
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := audit.Verify(ctx, db, keys.lookup())
			if err != nil || rep.Events != 200 {
				t.Fatalf("Verify = %+v, %v; want 200 events", rep, err)
			}
			cps, err := db.Checkpoints(ctx, "n1")
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint32]bool{}
			for _, c := range cps {
				seen[c.KeyVersion] = true
			}
			if !seen[1] || !seen[2] || !seen[3] || len(seen) != 3 {
				t.Fatalf("checkpoint key versions %v, want 1, 2 and 3", seen)
			}
			last, err := db.ListAudit(ctx, audit.Filter{Limit: audit.MaxListLimit})
			if err != nil || len(last) != 200 || last[0].KeyVersion != 1 || last[199].KeyVersion != 3 {
				t.Fatalf("ListAudit: %d events, %v", len(last), err)
			}
		})
	}
}

// TestAuditColumnsCheckedAgainstBodies edits the columns kept beside an
// event's body, past the append-only triggers: a scan names the event and
// the column, and a listing answers from the bodies, reports the row, and
// serves it only when its body matches the filter.
func TestAuditColumnsCheckedAgainstBodies(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.DSN(t)
			raw, err := store.Open(ctx, dsn, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = raw.Close() })
			if err := raw.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			db := audit.OnRows(raw)
			// Rows written before migration 20, in JSON with copies of
			// fields as columns (compact records keep no field twice).
			appendLegacy(t, raw, auditEvent(1), auditEvent(2), auditEvent(3))
			intruder := storetest.Intruder(t, dsn)
			if _, err := intruder.ExecContext(ctx, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 2`); err != nil {
				t.Fatal(err)
			}
			var cerr *audit.CorruptEventError
			err = db.ScanAudit(ctx, "n1", 0, func(audit.Event) error { return nil })
			if !errors.As(err, &cerr) || cerr.Seq != 2 || cerr.Column != "principal" {
				t.Fatalf("ScanAudit = %v; want the principal column of seq 2 named", err)
			}
			p, err := db.ListAuditPage(ctx, audit.Filter{Principal: "mallory"})
			if err != nil || len(p.Events) != 0 || len(p.Corrupt) != 1 || p.Corrupt[0].Seq != 2 || p.More || p.Last == nil || p.Last.Seq != 2 {
				t.Fatalf("?principal=mallory: %+v, %v; want no event and seq 2 reported", p, err)
			}
			p, err = db.ListAuditPage(ctx, audit.Filter{Principal: "client-1", Limit: 1})
			if err != nil || len(p.Events) != 1 || !p.More || p.Last.Seq != 1 {
				t.Fatalf("?principal=client-1&limit=1: %+v, %v", p, err)
			}
			// Unfiltered, the relabelled row still answers from its body.
			p, err = db.ListAuditPage(ctx, audit.Filter{})
			if err != nil || len(p.Events) != 3 || p.Events[1].PrincipalID != "client-1" || len(p.Corrupt) != 1 {
				t.Fatalf("unfiltered: %+v, %v", p, err)
			}
			if _, err := intruder.ExecContext(ctx, `UPDATE audit_events SET body = '{"id":1}' WHERE seq = 3`); err != nil {
				t.Fatal(err)
			}
			p, err = db.ListAuditPage(ctx, audit.Filter{})
			if err != nil || len(p.Events) != 2 || len(p.Corrupt) != 2 || p.Corrupt[1].Column != "" {
				t.Fatalf("with an undecodable body: %+v, %v", p, err)
			}
		})
	}
}

// appendLegacy appends events as rows of their JSON form to audit_events,
// as Coffer did before migration 20.
func appendLegacy(t testing.TB, db *store.DB, events ...audit.Event) {
	t.Helper()
	rows := make([]coffer.AuditRow, len(events))
	for i := range events {
		b, err := events[i].MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		rows[i] = coffer.AuditRow{AuditColumns: audit.ColumnsOf(&events[i]), Body: string(b)}
	}
	if err := db.AppendAuditRows(context.Background(), rows, nil); err != nil {
		t.Fatal(err)
	}
}

// auditEvent is event seq of node n1, as the store keeps it (not chained).
func auditEvent(seq uint64) audit.Event {
	return audit.Event{ID: audit.EventID("n1", seq), Seq: seq, Node: "n1", Time: time.Date(2026, 11, 28, 12, 0, int(seq), 0, time.UTC),
		PrincipalID: "client-1", Action: "read", Resource: "collections/customers", Status: 200,
		PrevHash: audit.Genesis("n1"), Hash: audit.Genesis("n2"), KeyVersion: 1}
}

// BenchmarkLogSQLite compares group commit with one transaction per event
// on the real SQLite store (synchronous=FULL).
func BenchmarkLogSQLite(b *testing.B) {
	for _, bc := range []struct {
		name     string
		maxBatch int
	}{
		{"group-commit", 0},
		{"one-append-per-event", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := audit.OnRows(storetest.Open(b, storetest.Backends()[0]))
			ctx := context.Background()
			w, err := audit.NewWriter(ctx, db, audit.WriterConfig{
				Node: "n1", Keys: keys, MaxBatch: bc.maxBatch, Logger: quiet,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = w.Close(ctx) }()
			e := audit.Event{PrincipalID: "client-1", Action: "read", Resource: "collections/customers", Status: 200}
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := w.Log(ctx, e); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
