package lifecycle_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/vault"
)

// keyStore maps the store's duplicate-version error to the keyring's.
type keyStore struct{ *store.DB }

func (k keyStore) InsertDataKey(ctx context.Context, dk coffer.DataKey) error {
	err := k.DB.InsertDataKey(ctx, dk)
	if errors.Is(err, store.ErrVersionExists) {
		return fmt.Errorf("%w: %w", keyring.ErrVersionExists, err)
	}
	return err
}

type fixture struct {
	db   *store.DB
	dsn  string
	keys *keyring.Keyring
}

// reopen opens another connection pool on f's database, as another node
// would.
func (f fixture) reopen(tb testing.TB) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), f.dsn, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func setup(tb testing.TB, b storetest.Backend) fixture {
	tb.Helper()
	dsn := b.DSN(tb)
	db, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	root, err := secret.Random(rand.Reader, 32)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := keyprovider.NewLocal("test", root, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	kr := keyring.New(p, keyStore{db}, keyring.Options{})
	if err := db.CreateCollection(context.Background(), coffer.Collection{Name: "c", CreatedAt: time.Now(),
		Fields: []coffer.Field{{Name: "f", Type: coffer.TypeString}, {Name: "g", Type: coffer.TypeString}}}); err != nil {
		tb.Fatal(err)
	}
	return fixture{db: db, dsn: dsn, keys: kr}
}

// insert stores n records r<start>… as the vault writes them: values
// "ID-f" and "ID-g" and a Seal, three seals each.
func (f fixture) insert(tb testing.TB, n, start int, expires *time.Time) {
	tb.Helper()
	f.put(tb, n, start, expires, 1)
}

// insertLegacy stores records as written before records carried a
// revision (format 1): the values alone, with the AAD (collection, id,
// field).
func (f fixture) insertLegacy(tb testing.TB, n, start int) {
	tb.Helper()
	f.put(tb, n, start, nil, 0)
}

func (f fixture) put(tb testing.TB, n, start int, expires *time.Time, revision uint64) {
	tb.Helper()
	ctx := context.Background()
	for i := start; i < start+n; i++ {
		id := fmt.Sprintf("r%06d", i)
		now := time.Now().UTC()
		r := coffer.SealedRecord{ID: id, Collection: "c", KeyID: "collection/c", CreatedAt: now, UpdatedAt: now,
			ExpiresAt: expires, Values: map[string][]byte{}, Revision: revision}
		pts := map[string][]byte{"f": []byte(id + "-f"), "g": []byte(id + "-g")}
		if revision > 0 {
			if err := vault.SealRecord(ctx, f.keys, &r, pts); err != nil {
				tb.Fatal(err)
			}
		} else {
			for fld, pt := range pts {
				env, err := f.keys.Seal(ctx, r.KeyID, pt, envelope.AAD("c", id, fld))
				if err != nil {
					tb.Fatal(err)
				}
				r.Values[fld] = env
			}
		}
		if err := f.db.InsertRecord(ctx, r, []coffer.IndexEntry{{Field: "f", Version: 1, MAC: []byte(id)}}); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestRewrapResumesAfterAKill(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := setup(t, b)
			f.insert(t, 1200, 0, nil)
			if _, err := f.keys.Rotate(ctx, "collection/c"); err != nil {
				t.Fatal(err)
			}
			f.insert(t, 300, 1200, nil) // already on v2

			a := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a", Batch: 500})
			rep, err := a.Rewrap(ctx, 1) // one batch, then "killed"
			if err != nil {
				t.Fatal(err)
			}
			if rep.Done || rep.Rewrapped != 500 {
				t.Fatalf("first batch: %+v", rep)
			}
			// Another node cannot take the job while a's lease lives.
			b2 := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "b", Batch: 500})
			if _, err := b2.Rewrap(ctx, 0); !errors.Is(err, lifecycle.ErrBusy) {
				t.Fatalf("second node while leased: %v", err)
			}
			// The same node restarts and resumes from the saved cursor.
			a2 := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a", Batch: 500})
			rep, err = a2.Rewrap(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Done || rep.Rewrapped != 700 {
				t.Fatalf("resumed run: %+v (want 700 more, done)", rep)
			}
			// Every value is on v2 and still opens to what was written.
			recs, err := f.db.RecordsAfter(ctx, "", "", 2000)
			if err != nil || len(recs) != 1500 {
				t.Fatalf("records: %d %v", len(recs), err)
			}
			for _, r := range recs {
				for fld, env := range r.Values {
					if v, _ := envelope.KeyVersion(env); v != 2 {
						t.Fatalf("%s.%s still on v%d", r.ID, fld, v)
					}
					pt, err := f.keys.Open(ctx, r.KeyID, env, envelope.AAD("c", r.ID, fld, "1"))
					if err != nil || string(pt) != r.ID+"-"+fld {
						t.Fatalf("%s.%s after rewrap: %q %v", r.ID, fld, pt, err)
					}
				}
			}
			// Now v1 can be retired: nothing needs it.
			if err := f.keys.Retire(ctx, "collection/c", 1); err != nil {
				t.Fatal(err)
			}
			// A finished job does nothing until a rotation requests it again.
			if rep, err := a2.Rewrap(ctx, 0); err != nil || rep.Scanned != 0 {
				t.Fatalf("finished job re-ran: %+v %v", rep, err)
			}
			if err := a2.RequestRewrap(ctx); err != nil {
				t.Fatal(err)
			}
			if rep, err := a2.Rewrap(ctx, 0); err != nil || rep.Scanned != 1500 || rep.Rewrapped != 0 {
				t.Fatalf("requested run: %+v %v", rep, err)
			}
		})
	}
}

func TestPurgeExpired(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := setup(t, b)
			past := time.Now().Add(-time.Hour)
			future := time.Now().Add(time.Hour)
			f.insert(t, 700, 0, &past)
			f.insert(t, 10, 700, &future)
			f.insert(t, 10, 710, nil)
			j := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a", Batch: 300})
			n, err := j.Purge(ctx)
			if err != nil || n != 700 {
				t.Fatalf("purge: %d %v", n, err)
			}
			recs, _ := f.db.RecordsAfter(ctx, "", "", 1000)
			if len(recs) != 20 {
				t.Fatalf("%d records left, want 20", len(recs))
			}
			if ids, _ := f.db.SearchIndex(ctx, "c", "f", [][]byte{[]byte("r000001")}, 10); len(ids) != 0 {
				t.Fatalf("index entries of purged records remain: %v", ids)
			}
		})
	}
}

// BenchmarkRewrap measures rewrap throughput (records/s, two fields each).
func BenchmarkRewrap(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			f := setup(b, be)
			const n = 5000
			f.insert(b, n, 0, nil)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.keys.Rotate(ctx, "collection/c"); err != nil {
					b.Fatal(err)
				}
				j := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a"})
				if err := j.RequestRewrap(ctx); err != nil {
					b.Fatal(err)
				}
				rep, err := j.Rewrap(ctx, 0)
				if err != nil || rep.Rewrapped != n {
					b.Fatalf("%+v %v", rep, err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// TestRewrapUpgradesAndSkips: the rewrap moves records written before
// records carried a revision (format 1) to format 2 in place, whatever
// their key version, and leaves as they are (and goes on past) a record
// that fails its integrity check and records whose key version ended.
func TestRewrapUpgradesAndSkips(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := setup(t, b)
			f.insertLegacy(t, 10, 0)
			j := lifecycle.New(lifecycle.Config{Store: f.db, Keys: f.keys, Node: "a", Batch: 4})
			rep, err := j.Rewrap(ctx, 0)
			if err != nil || !rep.Done || rep.Rewrapped != 10 || rep.Skipped != 0 {
				t.Fatalf("upgrade run: %+v %v", rep, err)
			}
			recs, err := f.db.RecordsAfter(ctx, "", "", 100)
			if err != nil || len(recs) != 10 {
				t.Fatalf("records: %d %v", len(recs), err)
			}
			for _, r := range recs {
				if r.Revision != 1 || len(r.Seal) == 0 {
					t.Fatalf("%s not upgraded: revision %d, seal %d bytes", r.ID, r.Revision, len(r.Seal))
				}
				for fld, env := range r.Values {
					if pt, err := f.keys.Open(ctx, r.KeyID, env, envelope.AAD("c", r.ID, fld, "1")); err != nil || string(pt) != r.ID+"-"+fld {
						t.Fatalf("%s.%s after the upgrade: %q %v", r.ID, fld, pt, err)
					}
				}
			}
			if err := j.RequestRewrap(ctx); err != nil {
				t.Fatal(err)
			}
			if rep, err := j.Rewrap(ctx, 0); err != nil || rep.Rewrapped != 0 {
				t.Fatalf("second run moved upgraded records again: %+v %v", rep, err)
			}

			// A tampered record (its owner edited after sealing) and two
			// whose version an operator retired behind the job's back.
			now := time.Now().UTC()
			bad := coffer.SealedRecord{ID: "t0", Collection: "c", KeyID: "collection/c", CreatedAt: now, UpdatedAt: now, Revision: 1}
			if err := vault.SealRecord(ctx, f.keys, &bad, map[string][]byte{"f": []byte("x")}); err != nil {
				t.Fatal(err)
			}
			bad.Owner = "mallory"
			if err := f.db.InsertRecord(ctx, bad, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := f.keys.Rotate(ctx, "collection/c"); err != nil {
				t.Fatal(err)
			}
			if err := j.RequestRewrap(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err = j.Rewrap(ctx, 0)
			if err != nil || !rep.Done || rep.Rewrapped != 10 || rep.Skipped != 1 || rep.Tampered != 1 {
				t.Fatalf("run past a tampered record: %+v %v", rep, err)
			}
			if got, err := f.db.Record(ctx, "c", "t0"); err != nil || !bytes.Equal(got.Seal, bad.Seal) {
				t.Fatalf("the tampered record was resealed: %v", err)
			}
			if err := f.db.DeleteRecord(ctx, "c", "t0"); err != nil {
				t.Fatal(err)
			}
			f.insert(t, 2, 100, nil) // under version 2
			if _, err := f.keys.Rotate(ctx, "collection/c"); err != nil {
				t.Fatal(err)
			}
			if err := f.keys.Retire(ctx, "collection/c", 2); err != nil {
				t.Fatal(err)
			}
			if err := j.RequestRewrap(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err = j.Rewrap(ctx, 0)
			if err != nil || !rep.Done || rep.Skipped != 12 || rep.Tampered != 0 {
				t.Fatalf("run past records of a retired version: %+v %v", rep, err)
			}
		})
	}
}
