package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestExportShredsSubjectKeys: a backup carries no subject key material,
// no blind index entry of a subject-bound record and no audit value key,
// so erasing a subject later is final for backups taken before;
// everything else is exported.
func TestExportShredsSubjectKeys(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			src := openRaw(t, b)
			db := src.db
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(db.CreateCollection(ctx, coffer.Collection{Name: "people", CreatedAt: bt0,
				Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail, Searchable: true}}}))
			for _, r := range []struct{ id, subject, key string }{
				{"a", "alice", "subject/alice"}, {"n", "", "collection/people"},
			} {
				must(db.InsertRecord(ctx, coffer.SealedRecord{ID: r.id, Collection: "people", Subject: r.subject, KeyID: r.key,
					CreatedAt: bt0, UpdatedAt: bt0, Values: map[string][]byte{"email": {1, 2, 3}}},
					[]coffer.IndexEntry{{Field: "email", Version: 1, MAC: []byte(r.id)}}))
			}
			for _, k := range []coffer.DataKey{
				{KeyID: "subject/alice", Version: 1, Wrapped: []byte("wrapped-alice-1"), State: coffer.KeyRetired, Created: bt0},
				{KeyID: "subject/alice", Version: 2, Wrapped: []byte("wrapped-alice-2"), State: coffer.KeyActive, Created: bt0},
				{KeyID: "collection/people", Version: 1, Wrapped: []byte("wrapped-people"), State: coffer.KeyActive, Created: bt0},
				{KeyID: "subjectless", Version: 1, Wrapped: []byte("wrapped-other"), State: coffer.KeyActive, Created: bt0.Add(time.Second)},
				// The audit value keys leave no trace: erasure shreds them.
				{KeyID: "audit-value/people/email", Version: 1, Wrapped: []byte("wrapped-audit-value"), State: coffer.KeyActive, Created: bt0},
				{KeyID: "audit-value/tokens", Version: 1, Wrapped: []byte("wrapped-audit-tokens"), State: coffer.KeyActive, Created: bt0},
			} {
				must(db.InsertDataKey(ctx, k))
			}
			// The use counts travel with the key (the subject's too: a
			// tombstone keeps its counts).
			must(db.AddDataKeyUses(ctx, "collection/people", 1, 7, 4))
			must(db.AddDataKeyUses(ctx, "subject/alice", 2, 3, 2))
			got := export(t, db)
			us := micros(bt0)
			want := map[string][]string{
				"data_keys": {
					line("collection/people", int64(1), []byte("wrapped-people"), "active", us, int64(7), int64(4)),
					line("subject/alice", int64(1), []byte{}, "destroyed", us, int64(0), int64(0)),
					line("subject/alice", int64(2), []byte{}, "destroyed", us, int64(3), int64(2)),
					line("subjectless", int64(1), []byte("wrapped-other"), "active", us+1e6, int64(0), int64(0)),
				},
				"record_index": {line("people", "email", []byte("n"), "n", int64(1))},
			}
			for table, rows := range want {
				if len(got[table]) != len(rows) {
					t.Fatalf("%s exported %q\nwant %q", table, got[table], rows)
				}
				for i := range rows {
					if got[table][i] != rows[i] {
						t.Errorf("%s row %d = %s\nwant %s", table, i, got[table][i], rows[i])
					}
				}
			}
			if len(got["records"]) != 2 {
				t.Errorf("records exported: %q", got["records"])
			}
			// The live store keeps the subject's key.
			keys, err := db.DataKeys(ctx, "subject/alice")
			if err != nil || len(keys) != 2 || len(keys[0].Wrapped) == 0 || len(keys[1].Wrapped) == 0 {
				t.Fatalf("live subject keys changed: %+v %v", keys, err)
			}
		})
	}
}

func micros(t time.Time) int64 { return t.UnixMicro() }

// line renders a row as export does.
func line(vals ...any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprintf("%T:%q", v, v)
	}
	return strings.Join(parts, "|")
}
