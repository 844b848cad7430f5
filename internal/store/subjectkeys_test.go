package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestOpenReadOnly: a store opened read-only reads a store that another
// handle keeps writing to, sees its new writes, and refuses every write
// of its own.
func TestOpenReadOnly(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := b.DSN(t)
			live, err := store.Open(ctx, dsn, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer live.Close()
			if err := live.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			k1 := coffer.DataKey{KeyID: "subject/alice", Version: 1, Wrapped: []byte("w1"), State: coffer.KeyActive, Created: t0}
			if err := live.InsertDataKey(ctx, k1); err != nil {
				t.Fatal(err)
			}
			ro, err := store.OpenReadOnly(ctx, dsn)
			if err != nil {
				t.Fatalf("open read-only beside a live writer: %v", err)
			}
			defer ro.Close()
			if cur, latest, err := ro.SchemaVersions(ctx); err != nil || cur != latest || cur < 1 {
				t.Fatalf("schema versions: %d %d %v", cur, latest, err)
			}
			// The live side goes on writing; the reader sees it.
			k2 := k1
			k2.Version, k2.Wrapped = 2, []byte("w2")
			if err := live.InsertDataKey(ctx, k2); err != nil {
				t.Fatalf("write beside a reader: %v", err)
			}
			got, err := ro.DataKeysIn(ctx, []string{"subject/alice", "subject/nobody"})
			if err != nil || len(got) != 2 || string(got[1].Wrapped) != "w2" {
				t.Fatalf("read-only read: %+v %v", got, err)
			}
			k3 := k1
			k3.KeyID = "subject/bob"
			if err := ro.InsertDataKey(ctx, k3); !errors.Is(err, store.ErrReadOnly) {
				t.Fatalf("insert through a read-only store: %v", err)
			}
			if _, err := ro.RestoreSubjectKeys(ctx, []coffer.DataKey{k3}); !errors.Is(err, store.ErrReadOnly) {
				t.Fatalf("transaction on a read-only store: %v", err)
			}
			if err := ro.DestroyDataKeys(ctx, "subject/alice"); !errors.Is(err, store.ErrReadOnly) {
				t.Fatalf("destroy through a read-only store: %v", err)
			}
			if err := ro.Migrate(ctx); !errors.Is(err, store.ErrReadOnly) {
				t.Fatalf("migrate a read-only store: %v", err)
			}
			if keys, err := live.DataKeys(ctx, "subject/alice"); err != nil || len(keys) != 2 || keys[0].State != coffer.KeyActive {
				t.Fatalf("the live store after the read-only writes: %+v %v", keys, err)
			}
			if keys, err := live.DataKeys(ctx, "subject/bob"); err != nil || len(keys) != 0 {
				t.Fatalf("a read-only insert reached the store: %+v %v", keys, err)
			}
		})
	}
}

// TestOpenReadOnlySQLiteFile: nothing is created for a missing file, and a
// database whose writer has gone (its WAL checkpointed and removed) is read
// without a byte of it changing.
func TestOpenReadOnlySQLiteFile(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "nope.db")
	if _, err := store.OpenReadOnly(ctx, missing); err == nil {
		t.Fatal("opened a SQLite file that does not exist")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("a read-only open created %s: %v", missing, err)
	}
	path := storetest.SQLiteDSN(t)
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertDataKey(ctx, coffer.DataKey{KeyID: "subject/a", Version: 1, Wrapped: []byte("w"), State: coffer.KeyActive, Created: t0}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	sum := func() [32]byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	before := sum()
	fi, _ := os.Stat(path)
	ro, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatalf("open read-only without a writer: %v", err)
	}
	if keys, err := ro.DataKeysIn(ctx, []string{"subject/a"}); err != nil || len(keys) != 1 {
		t.Fatalf("read: %+v %v", keys, err)
	}
	_ = ro.Close()
	if sum() != before {
		t.Fatal("a read-only open changed the database file")
	}
	if fi2, _ := os.Stat(path); fi2.Mode() != fi.Mode() {
		t.Fatalf("a read-only open changed the file mode: %v → %v", fi.Mode(), fi2.Mode())
	}
}

// TestRestoreSubjectKeys: tombstones are listed and replaced by the
// versions of another store, exactly; nothing else is ever replaced, and a
// refused batch changes nothing.
func TestRestoreSubjectKeys(t *testing.T) {
	forEach(t, func(t *testing.T, src *store.DB) {
		ctx := context.Background()
		dst := storetest.Open(t, storetest.Backends()[0])
		if src.Dialect() == store.Postgres {
			// Across backends too: the restored store need not be the
			// source's kind.
			dst = storetest.Open(t, storetest.Backends()[1])
		}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		key := func(id string, v uint32, wrapped, state string) coffer.DataKey {
			return coffer.DataKey{KeyID: id, Version: v, Wrapped: []byte(wrapped), State: state, Created: t0.Add(time.Duration(v) * time.Second)}
		}
		for _, k := range []coffer.DataKey{
			key("subject/alice", 1, "a1", coffer.KeyRetired), key("subject/alice", 2, "a2", coffer.KeyActive),
			key("subject/bob", 1, "", coffer.KeyDestroyed), key("subject/carol", 1, "c1", coffer.KeyActive),
			key("collection/people", 1, "p1", coffer.KeyActive),
		} {
			must(src.InsertDataKey(ctx, k))
		}
		must(src.AddDataKeyUses(ctx, "subject/alice", 2, 5, 3))
		for _, k := range []coffer.DataKey{
			key("subject/alice", 1, "", coffer.KeyDestroyed), key("subject/alice", 2, "", coffer.KeyDestroyed),
			key("subject/bob", 1, "", coffer.KeyDestroyed), key("subject/dave", 1, "", coffer.KeyDestroyed),
			key("subject/erin", 1, "e1", coffer.KeyActive), key("collection/people", 1, "p1", coffer.KeyActive),
			key("index/people/email", 1, "", coffer.KeyDestroyed),
		} {
			must(dst.InsertDataKey(ctx, k))
		}
		tomb, err := dst.SubjectKeyTombstones(ctx, "", 10)
		if err != nil || !slices.Equal(tomb, []string{"subject/alice", "subject/bob", "subject/dave"}) {
			t.Fatalf("tombstones: %v %v", tomb, err)
		}
		if page, err := dst.SubjectKeyTombstones(ctx, "subject/alice", 1); err != nil || !slices.Equal(page, []string{"subject/bob"}) {
			t.Fatalf("tombstones after alice: %v %v", page, err)
		}
		rows, err := src.DataKeysIn(ctx, tomb)
		if err != nil || len(rows) != 3 || rows[0].KeyID != "subject/alice" || rows[2].KeyID != "subject/bob" {
			t.Fatalf("source rows: %+v %v", rows, err)
		}
		if rows[1].Uses != 5 || rows[1].RewrapUses != 3 || rows[0].State != coffer.KeyRetired {
			t.Fatalf("source rows lost a use count or a state: %+v", rows)
		}
		alice := rows[:2]
		dave := key("subject/dave", 1, "d1", coffer.KeyActive)
		// Refused, each of them, and nothing changes.
		for name, batch := range map[string][]coffer.DataKey{
			"a destroyed version":           {rows[2]},
			"a live key":                    {dave, key("subject/erin", 2, "e2", coffer.KeyActive)},
			"a key that is not a subject's": {key("index/people/email", 1, "i1", coffer.KeyActive)},
			"a subject the store never had": {key("subject/zoe", 1, "z1", coffer.KeyActive)},
			"a version without key bytes":   {key("subject/dave", 1, "", coffer.KeyActive)},
			"an unknown state":              {key("subject/dave", 1, "d1", "unknown")},
			"a destroyed version with key bytes": {key("subject/dave", 1, "d1", coffer.KeyDestroyed),
				key("subject/dave", 2, "d2", coffer.KeyActive)},
			"more rewrap uses than uses": {func() coffer.DataKey {
				k := dave
				k.Uses, k.RewrapUses = 1, 2
				return k
			}()},
		} {
			if n, err := dst.RestoreSubjectKeys(ctx, batch); err == nil || n != 0 {
				t.Fatalf("restore %s: %d %v", name, n, err)
			}
		}
		if got, err := dst.SubjectKeyTombstones(ctx, "", 10); err != nil || !slices.Equal(got, tomb) {
			t.Fatalf("tombstones after refused restores: %v %v", got, err)
		}
		if ks, _ := dst.DataKeys(ctx, "subject/erin"); len(ks) != 1 || string(ks[0].Wrapped) != "e1" {
			t.Fatalf("a live key changed: %+v", ks)
		}
		n, err := dst.RestoreSubjectKeys(ctx, alice)
		if err != nil || n != 1 {
			t.Fatalf("restore alice: %d %v", n, err)
		}
		got, err := dst.DataKeys(ctx, "subject/alice")
		if err != nil || len(got) != 2 {
			t.Fatalf("restored alice: %+v %v", got, err)
		}
		for i := range got {
			w := alice[i]
			if got[i].Version != w.Version || !bytes.Equal(got[i].Wrapped, w.Wrapped) || got[i].State != w.State ||
				!got[i].Created.Equal(w.Created) || got[i].Uses != w.Uses || got[i].RewrapUses != w.RewrapUses {
				t.Fatalf("restored version %d = %+v, want %+v", i, got[i], w)
			}
		}
		if got, err := dst.SubjectKeyTombstones(ctx, "", 10); err != nil || !slices.Equal(got, []string{"subject/bob", "subject/dave"}) {
			t.Fatalf("tombstones after the restore: %v %v", got, err)
		}
		// Once restored, a key is live: a second copy is refused.
		if _, err := dst.RestoreSubjectKeys(ctx, alice); !errors.Is(err, store.ErrNotTombstone) {
			t.Fatalf("restore alice twice: %v", err)
		}
		// A key whose old version was destroyed on its own comes back
		// with that version a tombstone.
		dave2 := []coffer.DataKey{key("subject/dave", 1, "", coffer.KeyDestroyed), key("subject/dave", 2, "d2", coffer.KeyActive)}
		if n, err := dst.RestoreSubjectKeys(ctx, dave2); err != nil || n != 1 {
			t.Fatalf("restore dave with a destroyed version: %d %v", n, err)
		}
		if ks, err := dst.DataKeys(ctx, "subject/dave"); err != nil || len(ks) != 2 || ks[0].State != coffer.KeyDestroyed ||
			len(ks[0].Wrapped) != 0 || ks[1].State != coffer.KeyActive || string(ks[1].Wrapped) != "d2" {
			t.Fatalf("restored dave: %+v %v", ks, err)
		}
	})
}

// TestUnindexedSubjectRecords: the subject-bound records with a usable key
// and no index entry are listed; filing their entries is idempotent and
// yields to an update made in between.
func TestUnindexedSubjectRecords(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCollection(t, db, "people")
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range []coffer.DataKey{
			{KeyID: "subject/alice", Version: 1, Wrapped: []byte("a"), State: coffer.KeyActive, Created: t0},
			{KeyID: "subject/bob", Version: 1, State: coffer.KeyDestroyed, Created: t0},
			{KeyID: "subject/rita", Version: 1, Wrapped: []byte("r"), State: coffer.KeyRetired, Created: t0},
		} {
			must(db.InsertDataKey(ctx, k))
		}
		rec := func(id, subject string, v byte) coffer.SealedRecord {
			k := "collection/people"
			if subject != "" {
				k = "subject/" + subject
			}
			return coffer.SealedRecord{ID: id, Collection: "people", Subject: subject, KeyID: k, CreatedAt: t0, UpdatedAt: t0,
				Values: map[string][]byte{"email": {v}}}
		}
		entry := func(b byte) []coffer.IndexEntry {
			return []coffer.IndexEntry{{Field: "email", Version: 1, MAC: []byte{b}}}
		}
		for _, r := range []coffer.SealedRecord{
			rec("a1", "alice", 1), rec("a2", "alice", 2), rec("b1", "bob", 3), rec("c1", "", 4), rec("r1", "rita", 5), rec("z1", "zoe", 6),
		} {
			must(db.InsertRecord(ctx, r, nil))
		}
		must(db.InsertRecord(ctx, rec("a3", "alice", 7), entry(7)))
		got, err := db.UnindexedSubjectRecords(ctx, "", "", 10)
		if err != nil || len(got) != 2 || got[0].ID != "a1" || got[1].ID != "a2" || got[0].Values["email"][0] != 1 {
			t.Fatalf("unindexed subject records: %+v %v", got, err)
		}
		if page, err := db.UnindexedSubjectRecords(ctx, "people", "a1", 1); err != nil || len(page) != 1 || page[0].ID != "a2" {
			t.Fatalf("the page after a1: %+v %v", page, err)
		}
		// a2 changed since it was read: its (stale) entry is not filed.
		changed := got[1]
		changed.Values = map[string][]byte{"email": {9}}
		changed.UpdatedAt = t0.Add(time.Second)
		changed.Revision++
		must(db.UpdateRecord(ctx, changed, nil, nil))
		n, err := db.AddMissingIndexEntries(ctx, got, [][]coffer.IndexEntry{entry(1), entry(2)})
		if err != nil || n != 1 {
			t.Fatalf("add entries: %d %v; want 1", n, err)
		}
		if n, err := db.AddMissingIndexEntries(ctx, got[:1], [][]coffer.IndexEntry{entry(8)}); err != nil || n != 0 {
			t.Fatalf("a second entry for a field: %d %v", n, err)
		}
		if ids, err := db.SearchIndex(ctx, "people", "email", [][]byte{{1}}, 10); err != nil || !slices.Equal(ids, []string{"a1"}) {
			t.Fatalf("search the filed entry: %v %v", ids, err)
		}
		if ids, err := db.SearchIndex(ctx, "people", "email", [][]byte{{2}, {8}}, 10); err != nil || len(ids) != 0 {
			t.Fatalf("search entries that must not be filed: %v %v", ids, err)
		}
		if got, err := db.UnindexedSubjectRecords(ctx, "", "", 10); err != nil || len(got) != 1 || got[0].ID != "a2" {
			t.Fatalf("unindexed after filing: %+v %v", got, err)
		}
		if _, err := db.AddMissingIndexEntries(ctx, got, nil); err == nil {
			t.Fatal("entries that do not match the records were accepted")
		}
	})
}
