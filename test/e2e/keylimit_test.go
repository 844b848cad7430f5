package e2e

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// sealLimit is the keyring's hard stop, 2^32 - 2^28 encryptions under one
// key version (keyring.DefaultSealLimit).
const sealLimit = 1<<32 - 1<<28

// execStore runs one statement on n's database, as a database
// administrator (or another node's count) would.
func (n *node) execStore(q string) {
	n.t.Helper()
	kind, dsn := n.Config().Database()
	driver := "sqlite"
	if kind != "sqlite" {
		driver = "pgx"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		n.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		n.t.Fatal(err)
	}
}

// #16.7: a data key version that sealed as many values as AES-GCM with
// random nonces allows stops sealing: without automatic rotation a write
// is a 503 that says so (the values already stored still read); with it,
// the key is rotated at once and the write goes to the new version.
func TestDataKeyHardStop(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := start(t, b, "COFFER_KEYS_ROTATE_AFTER_USES=0")
			ctx := context.Background()
			if err := n.Admin.CreateCollection(ctx, customers); err != nil {
				t.Fatal(err)
			}
			first, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": "first@example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			// The version's count as every node shares it, at the bound.
			n.execStore(`UPDATE data_keys SET uses = ` + strconv.FormatInt(sealLimit, 10) + ` WHERE key_id = 'collection/customers' AND version = 1`)
			n.Restart()
			_, err = n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": "second@example.com"}})
			if client.StatusCode(err) != 503 || !strings.Contains(err.Error(), "a data key reached its use bound and must be rotated") {
				t.Fatalf("a write under a key at its bound: %v, want 503", err)
			}
			if r, err := n.Admin.GetRecord(ctx, "customers", first); err != nil || r.Data["email"] != "first@example.com" {
				t.Fatalf("a stored value no longer reads: %v %v", r, err)
			}

			// With rotation by use count configured, the key rotates at once.
			n.Env = append(n.Env, "COFFER_KEYS_ROTATE_AFTER_USES=1073741824")
			n.Restart()
			id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": "second@example.com"}})
			if err != nil {
				t.Fatalf("a write with automatic rotation: %v", err)
			}
			if r, err := n.Admin.GetRecord(ctx, "customers", id); err != nil || r.Data["email"] != "second@example.com" {
				t.Fatalf("the new record: %v %v", r, err)
			}
			ks, err := n.openStore().DataKeys(ctx, "collection/customers")
			if err != nil || len(ks) != 2 {
				t.Fatalf("key versions %+v %v, want a second one", ks, err)
			}
			if !strings.Contains(n.Logs.String(), "reached its use bound and was rotated") {
				t.Fatal("the rotation at the bound was not logged")
			}
		})
	}
}
