package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/backup"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testserver"
)

// restoreInto restores backupFile into a new directory (and, on
// PostgreSQL, into the database dbURL, or a fresh one when it is empty)
// with rootKey and the options set by with, and serves it; the admin
// client of the backup signs in.
func restoreInto(t *testing.T, src *node, b storetest.Backend, backupFile, rootKey, dbURL string, with func(*backup.RestoreOptions)) (*node, backup.RestoreResult, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	opts := backup.RestoreOptions{DataDir: dir, In: backupFile, RootKeyFile: rootKey, Listen: "127.0.0.1:0"}
	if b.Name != "sqlite" {
		if dbURL == "" {
			dbURL = b.DSN(t)
		}
		opts.DatabaseURL = dbURL
	}
	if with != nil {
		with(&opts)
	}
	res, err := backup.Restore(context.Background(), opts)
	if err != nil {
		return &node{Server: &testserver.Server{T: t, Dir: dir}, t: t}, res, err // the directory a failed restore leaves
	}
	n := &node{Server: testserver.At(t, b.Name, dir, app.InitResult{URL: res.URL, ClientID: src.Init.ClientID,
		ClientSecret: src.Init.ClientSecret, CACert: res.CACert}, testserver.Options{}), t: t}
	n.Serve("127.0.0.1:0")
	return n, res, nil
}

// TestRestoreWithSubjectKeys: a backup restored with the live deployment
// (serving meanwhile) as its subject-key source serves the values of the
// subjects not erased there, found by search again; a subject erased after
// the backup stays unreadable and unfound, as without a source; a source
// under another root key is refused before anything is made.
func TestRestoreWithSubjectKeys(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := start(t, b)
			ctx := context.Background()
			if err := n.Admin.CreateCollection(ctx, customers); err != nil {
				t.Fatal(err)
			}
			// A backup from before any subject: restored, it is a
			// deployment under the same root key whose subject keys, made
			// later, are not this one's.
			early := filepath.Join(t.TempDir(), "early.backup")
			if _, err := app.Backup(ctx, n.Config(), early); err != nil {
				t.Fatalf("backup: %v", err)
			}
			mkOn := func(n *node, subject, email string) string {
				t.Helper()
				id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Subject: subject,
					Data: map[string]any{"email": email, "name": "N " + email, "age": 42}})
				if err != nil {
					t.Fatal(err)
				}
				return id
			}
			mk := func(subject, email string) string { t.Helper(); return mkOn(n, subject, email) }
			alice1 := mk("alice", "alice@example.com")
			alice2 := mk("alice", "alice.two@example.com")
			bob := mk("bob", "bob@example.com")
			plain := mk("", "plain@example.com")
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			// Alice's key is rotated before the backup: both versions come back.
			if st, b := rotate(n, tok, "subject/alice"); st != 200 {
				t.Fatalf("rotate alice's key: %d %s", st, b)
			}
			alice3 := mk("alice", "alice.three@example.com")

			file := filepath.Join(t.TempDir(), "coffer.backup")
			if _, err := app.Backup(ctx, n.Config(), file); err != nil {
				t.Fatalf("backup: %v", err)
			}
			if st, _, body := n.do("DELETE", "/v1/subjects/bob", tok, "", nil); st != 200 {
				t.Fatalf("erase bob: %d %s", st, body)
			}
			// A subject that came after the backup: its key is not copied.
			mk("carol", "carol@example.com")
			rootKey := filepath.Join(n.Dir, "root.key")

			// A source under another root key: refused before anything is
			// made, the target database included (it is used next).
			other := filepath.Join(t.TempDir(), "other")
			otherDB := ""
			if b.Name != "sqlite" {
				otherDB = b.DSN(t)
			}
			if _, err := app.Init(ctx, app.InitOptions{DataDir: other, DatabaseURL: otherDB, Listen: "127.0.0.1:0"}); err != nil {
				t.Fatal(err)
			}
			target := ""
			if b.Name != "sqlite" {
				target = b.DSN(t)
			}
			refused, _, err := restoreInto(t, n, b, file, rootKey, target, func(o *backup.RestoreOptions) { o.SubjectKeysFromDataDir = other })
			if !errors.Is(err, backup.ErrSubjectKeySourceRootKey) || !strings.Contains(err.Error(), "root key") {
				t.Fatalf("a source under another root key: %v", err)
			}
			if _, err := os.Stat(refused.Dir); !os.IsNotExist(err) {
				t.Fatalf("a refused restore left %s behind: %v", refused.Dir, err)
			}

			// A source whose key for alice is another one: her values do
			// not open, and the restore fails after its import. The target
			// is left as it was (an empty database on PostgreSQL), so the
			// restore below can use it.
			stranger, _, err := restoreInto(t, n, b, early, rootKey, "", nil)
			if err != nil {
				t.Fatalf("restore the early backup: %v", err)
			}
			mkOn(stranger, "alice", "someone.else@example.com")
			failed, _, err := restoreInto(t, n, b, file, rootKey, target, func(o *backup.RestoreOptions) { o.SubjectKeysFromDataDir = stranger.Dir })
			if err == nil || !strings.Contains(err.Error(), "not the deployment this backup was taken from") {
				t.Fatalf("a source with other subject keys: %v", err)
			}
			if _, err := os.Stat(failed.Dir); !os.IsNotExist(err) {
				t.Fatalf("a failed restore left %s behind: %v", failed.Dir, err)
			}

			// The live deployment, serving all along, is the source.
			r, res, err := restoreInto(t, n, b, file, rootKey, target, func(o *backup.RestoreOptions) { o.SubjectKeysFromDataDir = n.Dir })
			if err != nil {
				t.Fatalf("restore with the live deployment's subject keys: %v", err)
			}
			// alice: values, three entries (one per email); bob: erased.
			want := backup.RestoreResult{URL: res.URL, CACert: res.CACert, SubjectKeysRestored: 1, SubjectKeysErased: 1, IndexEntriesAdded: 3}
			if !reflect.DeepEqual(res, want) {
				t.Fatalf("restore result: %+v\nwant %+v", res, want)
			}
			for id, email := range map[string]string{alice1: "alice@example.com", alice2: "alice.two@example.com",
				alice3: "alice.three@example.com", plain: "plain@example.com"} {
				got, err := r.Admin.GetRecord(ctx, "customers", id)
				if err != nil || got.Data["email"] != email || got.Data["name"] != "N "+email {
					t.Fatalf("restored record %s: %v %v", id, got, err)
				}
				hits, err := r.Admin.Search(ctx, "customers", map[string]any{"email": strings.ToUpper(email)}, 10)
				if err != nil || len(hits) != 1 || hits[0].ID != id || hits[0].Data["email"] != email {
					t.Fatalf("restored search for %s: %v %v", id, hits, err)
				}
			}
			rtok := r.Token(r.Init.ClientID, r.Init.ClientSecret)
			st, _, body := r.do("GET", "/v1/collections/customers/records/"+bob, rtok, "", nil)
			if st != 404 || !strings.Contains(string(body), "erased") || strings.Contains(string(body), "bob@example.com") {
				t.Fatalf("an erased subject's record in the restored deployment: %d %s", st, body)
			}
			if hits, err := r.Admin.Search(ctx, "customers", map[string]any{"email": "bob@example.com"}, 10); err != nil || len(hits) != 0 {
				t.Fatalf("an erased subject found by search in the restored deployment: %v %v", hits, err)
			}
			if hits, err := r.Admin.Search(ctx, "customers", map[string]any{"email": "carol@example.com"}, 10); err != nil || len(hits) != 0 {
				t.Fatalf("a subject newer than the backup in the restored deployment: %v %v", hits, err)
			}
			rdb := r.openStore()
			if ks, err := rdb.DataKeys(ctx, "subject/bob"); err != nil || len(ks) == 0 || !destroyedKeys(ks) {
				t.Fatalf("bob's key in the restored store: %+v %v", ks, err)
			}
			if ks, err := rdb.DataKeys(ctx, "subject/carol"); err != nil || len(ks) != 0 {
				t.Fatalf("carol's key was copied: %+v %v", ks, err)
			}
			// The restored deployment writes under alice's key as the live one did.
			id, err := r.Admin.CreateRecord(ctx, "customers", client.NewRecord{Subject: "alice", Data: map[string]any{"email": "alice.four@example.com"}})
			if err != nil {
				t.Fatalf("a new record for a restored subject: %v", err)
			}
			if got, err := r.Admin.GetRecord(ctx, "customers", id); err != nil || got.Data["email"] != "alice.four@example.com" {
				t.Fatalf("read it back: %v %v", got, err)
			}
			// The live deployment is untouched and still serves alice.
			if got, err := n.Admin.GetRecord(ctx, "customers", alice1); err != nil || got.Data["email"] != "alice@example.com" {
				t.Fatalf("the live deployment after the restore: %v %v", got, err)
			}
			for _, logs := range []string{r.Logs.String(), n.Logs.String()} {
				if strings.Contains(logs, "alice@example.com") {
					t.Fatal("a value reached a server's log")
				}
			}

			// Without a source, as before: alice's values stay sealed and unfound.
			plainRestore, res, err := restoreInto(t, n, b, file, rootKey, "", nil)
			if err != nil {
				t.Fatalf("restore without a source: %v", err)
			}
			if res.SubjectKeysRestored != 0 || res.IndexEntriesAdded != 0 {
				t.Fatalf("restore without a source: %+v", res)
			}
			ptok := plainRestore.Token(plainRestore.Init.ClientID, plainRestore.Init.ClientSecret)
			if st, _, body := plainRestore.do("GET", "/v1/collections/customers/records/"+alice1, ptok, "", nil); st != 404 || strings.Contains(string(body), "alice@") {
				t.Fatalf("alice without a source: %d %s", st, body)
			}
			if hits, err := plainRestore.Admin.Search(ctx, "customers", map[string]any{"email": "alice@example.com"}, 10); err != nil || len(hits) != 0 {
				t.Fatalf("alice found without a source: %v %v", hits, err)
			}
			if got, err := plainRestore.Admin.GetRecord(ctx, "customers", plain); err != nil || got.Data["email"] != "plain@example.com" {
				t.Fatalf("a subject-less record without a source: %v %v", got, err)
			}
		})
	}
}

func destroyedKeys(ks []coffer.DataKey) bool {
	for _, k := range ks {
		if k.State != coffer.KeyDestroyed || len(k.Wrapped) != 0 {
			return false
		}
	}
	return true
}
