package vault_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault"
)

// TestIndexSubjectRecords: on a real store and keyring, the subject-bound
// records without index entries get the entries a write would have filed,
// under the current index key version; an erased subject's records and
// subject-less records get none; a value its key does not open is counted
// and left out; a second run files nothing.
func TestIndexSubjectRecords(t *testing.T) {
	forEachBackend(t, testIndexSubjectRecords)
}

func testIndexSubjectRecords(t *testing.T, db *store.DB) {
	ctx := context.Background()
	kr := testKeyring(t, db)
	v := vault.New(vault.Config{Store: db, Keys: kr})
	now := time.Now().UTC()
	col := coffer.Collection{Name: "people", CreatedAt: now, Fields: []coffer.Field{
		{Name: "email", Type: coffer.TypeEmail, Searchable: true},
		{Name: "age", Type: coffer.TypeInteger, Searchable: true},
		{Name: "name", Type: coffer.TypeString},
	}}
	if err := db.CreateCollection(ctx, col); err != nil {
		t.Fatal(err)
	}
	// put stores a record sealed as a write seals it (the AAD of id, or of
	// aadID to make a value its key cannot open), without index entries,
	// as a backup restores a subject-bound record.
	put := func(id, aadID, subject string, data map[string]string) {
		t.Helper()
		keyID := "collection/people"
		if subject != "" {
			keyID = "subject/" + subject
		}
		r := coffer.SealedRecord{ID: id, Collection: "people", Subject: subject, KeyID: keyID, CreatedAt: now, UpdatedAt: now,
			Values: map[string][]byte{}}
		for f, val := range data {
			env, err := kr.Seal(ctx, keyID, []byte(val), envelope.AAD("people", aadID, f))
			if err != nil {
				t.Fatal(err)
			}
			r.Values[f] = env
		}
		if err := db.InsertRecord(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("a1", "a1", "alice", map[string]string{"email": "Alice@Example.com", "age": "42", "name": "Alice"})
	put("a2", "a2", "alice", map[string]string{"name": "Alice again"})
	put("b1", "b1", "bob", map[string]string{"email": "bob@example.com"})
	put("n1", "n1", "", map[string]string{"email": "plain@example.com"})
	put("w1", "elsewhere", "wendy", map[string]string{"email": "wendy@example.com"})
	if err := kr.Destroy(ctx, "subject/bob"); err != nil {
		t.Fatal(err)
	}
	// The index key was rotated: entries go under the current version.
	if _, _, err := kr.MAC(ctx, "index/people/email", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Rotate(ctx, "index/people/email"); err != nil {
		t.Fatal(err)
	}
	search := func(field, indexed string) []string {
		t.Helper()
		_, macs, err := kr.MACAll(ctx, "index/people/"+field, []byte(indexed))
		if err != nil {
			t.Fatal(err)
		}
		ids, err := db.SearchIndex(ctx, "people", field, macs, 10)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if ids := search("email", "alice@example.com"); len(ids) != 0 {
		t.Fatalf("found before indexing: %v", ids)
	}

	rep, err := v.IndexSubjectRecords(ctx, 1) // one record per batch: the paging too
	if err != nil {
		t.Fatal(err)
	}
	if rep != (vault.SubjectIndexReport{Scanned: 3, Entries: 2, WrongKey: 1}) {
		t.Fatalf("report: %+v", rep)
	}
	if ids := search("email", "alice@example.com"); !slices.Equal(ids, []string{"a1"}) {
		t.Fatalf("search alice's email (as the index lowercases it): %v", ids)
	}
	if ids := search("age", "42"); !slices.Equal(ids, []string{"a1"}) {
		t.Fatalf("search alice's age: %v", ids)
	}
	stale, err := db.StaleIndexEntries(ctx, "people", "email", 2, "", 10)
	if err != nil || len(stale) != 0 {
		t.Fatalf("entries filed under an old index key version: %+v %v", stale, err)
	}
	for _, probe := range []struct{ field, value string }{
		{"email", "bob@example.com"}, {"email", "plain@example.com"}, {"email", "wendy@example.com"},
	} {
		if ids := search(probe.field, probe.value); len(ids) != 0 {
			t.Fatalf("%s indexed: %v", probe.value, ids)
		}
	}
	again, err := v.IndexSubjectRecords(ctx, 100)
	if err != nil || again.Entries != 0 || again.WrongKey != 1 {
		t.Fatalf("second run: %+v %v", again, err)
	}
	if ids := search("email", "alice@example.com"); !slices.Equal(ids, []string{"a1"}) {
		t.Fatalf("search after the second run: %v", ids)
	}
}
