package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/backup"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testserver"
)

// openStore opens n's store directly (beside the running server) to look
// at what is at rest.
func (n *node) openStore() *store.DB {
	n.t.Helper()
	_, dsn := n.Config().Database()
	db, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { _ = db.Close() })
	return db
}

// versions counts the values of collection's records by key version.
func versions(t *testing.T, db *store.DB, collection string) map[uint32]int {
	t.Helper()
	out := map[uint32]int{}
	col, id := "", ""
	for {
		recs, err := db.RecordsAfter(context.Background(), col, id, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			col, id = r.Collection, r.ID
			if r.Collection != collection {
				continue
			}
			for _, env := range r.Values {
				v, err := envelope.KeyVersion(env)
				if err != nil {
					t.Fatal(err)
				}
				out[v]++
			}
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func rotate(n *node, tok, keyID string) (int, []byte) {
	st, _, b := n.postJSON("/v1/admin/keys/rotate", tok, map[string]string{"key_id": keyID})
	return st, b
}

// customerRecords creates the customers collection on n and returns the
// records a test writes to it (id → email), add, which writes record i
// (an email and an SSN), and readAll, which reads every one back and fails
// the test on a wrong or unreadable value: the before-and-after of a key
// change.
func customerRecords(t *testing.T, n *node) (want map[string]string, add func(i int), readAll func(when string)) {
	t.Helper()
	ctx := context.Background()
	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{}
	add = func(i int) {
		t.Helper()
		email := "user" + string(rune('a'+i)) + "@example.com"
		id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": email, "ssn": "123-45-6789"}})
		if err != nil {
			t.Fatal(err)
		}
		want[id] = email
	}
	readAll = func(when string) {
		t.Helper()
		for id, email := range want {
			r, err := n.Admin.GetRecord(ctx, "customers", id)
			if err != nil || r.Data["email"] != email || r.Data["ssn"] != "123-45-6789" {
				t.Fatalf("%s: record %s: %v %v", when, id, err, r)
			}
		}
	}
	return want, add, readAll
}

// TestKeyRotationAndRewrap: a collection key rotated while records exist;
// records on either version read back; the rewrap moves every value to the
// newest version; keys that must not rotate this way are refused.
func TestKeyRotationAndRewrap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		_, add, readAll := customerRecords(t, n)
		for i := range 4 {
			add(i)
		}
		db := n.openStore()
		if v := versions(t, db, "customers"); v[1] != 8 || len(v) != 1 {
			t.Fatalf("before rotation: versions %v", v)
		}
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		st, b := rotate(n, tok, "collection/customers")
		if st != 200 || !strings.Contains(string(b), `"version":2`) || !strings.Contains(string(b), `"rewrap_scheduled":true`) {
			t.Fatalf("rotate: %d %s", st, b)
		}
		for i := 4; i < 8; i++ { // sealed under version 2 while older values may still be on 1
			add(i)
		}
		readAll("after rotation")
		waitFor(t, "the rewrap to move every value to version 2", func() bool {
			v := versions(t, db, "customers")
			return v[2] == 16 && len(v) == 1
		})
		readAll("after rewrap")
		if hits, err := n.Admin.Search(ctx, "customers", map[string]any{"email": "usera@example.com"}, 10); err != nil || len(hits) != 1 {
			t.Fatalf("search after rewrap: %v %v", hits, err)
		}

		// The token signing key: a new one signs, tokens of the old one
		// still verify.
		if st, b := rotate(n, tok, "jwt/signing"); st != 200 {
			t.Fatalf("rotate signing key: %d %s", st, b)
		}
		if st, _, _ := n.do("GET", "/v1/collections", tok, "", nil); st != 200 {
			t.Fatalf("old token after signing key rotation: %d", st)
		}
		for key, status := range map[string]int{
			"index/customers": 422, "index/customers/email/x": 422, "mask/hash": 422, "audit/other": 422, "tokens/index": 422, "tokens/order": 422,
			"coffer/root-check": 422, "collection/nope": 404, "index/customers/nope": 404, "": 422, "collection/a b": 422,
		} {
			if st, b := rotate(n, tok, key); st != status || !strings.Contains(string(b), "problem") && status >= 400 {
				t.Errorf("rotate %q: %d %s, want %d", key, st, b, status)
			}
		}
		if st, _ := rotate(n, "", "collection/customers"); st != 401 {
			t.Errorf("rotate without a token: %d", st)
		}
		// Audited as rotations, refused ones too, not as a bare "admin".
		st, _, b = n.do("GET", "/v1/audit/events?action=keys.rotate&limit=100", tok, "", nil)
		var evs struct {
			Events []struct {
				Resource string `json:"resource"`
				Status   int    `json:"status"`
			} `json:"events"`
		}
		if err := json.Unmarshal(b, &evs); st != 200 || err != nil {
			t.Fatalf("audit: %d %s", st, b)
		}
		seen := map[string]bool{}
		for _, e := range evs.Events {
			seen[fmt.Sprintf("%s %d", e.Resource, e.Status)] = true
		}
		for _, want := range []string{"system/keys/collection/customers 200", "system/keys/jwt/signing 200", "system/keys/collection/nope 404", "system/keys/mask/hash 422"} {
			if !seen[want] {
				t.Errorf("no keys.rotate audit event %q among %v", want, seen)
			}
		}
	})
}

// TestRetentionPurge: records of a collection with retention disappear
// after they expire and the purge job runs; other records stay.
func TestRetentionPurge(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := start(t, b)
			n.Stop()
			// A node whose clock is three minutes behind writes records
			// that, by the real clock, expired two minutes ago.
			n.serveAt("127.0.0.1:0", func() time.Time { return time.Now().Add(-3 * time.Minute) })
			ctx := context.Background()
			short := client.Collection{Name: "sessions", Retention: "1m", Fields: []client.Field{{Name: "email", Type: "email"}}}
			if err := n.Admin.CreateCollection(ctx, short); err != nil {
				t.Fatal(err)
			}
			if err := n.Admin.CreateCollection(ctx, customers); err != nil {
				t.Fatal(err)
			}
			var gone []string
			for range 3 {
				id, err := n.Admin.CreateRecord(ctx, "sessions", client.NewRecord{Data: map[string]any{"email": "s@example.com"}})
				if err != nil {
					t.Fatal(err)
				}
				gone = append(gone, id)
			}
			keep, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Data: map[string]any{"email": "k@example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			db := n.openStore()
			if _, err := db.Record(ctx, "sessions", gone[0]); err != nil {
				t.Fatalf("record before purge: %v", err)
			}
			n.Stop()
			n.Serve("127.0.0.1:0") // the jobs run (purge first) as a node starts
			waitFor(t, "the purge", func() bool {
				for _, id := range gone {
					if _, err := db.Record(ctx, "sessions", id); coffer.ErrorCode(err) != coffer.ENOTFOUND {
						return false
					}
				}
				return true
			})
			if _, err := n.Admin.GetRecord(ctx, "sessions", gone[1]); client.StatusCode(err) != 404 {
				t.Fatalf("purged record: %v", err)
			}
			if r, err := n.Admin.GetRecord(ctx, "customers", keep); err != nil || r.Data["email"] != "k@example.com" {
				t.Fatalf("record without retention: %v %v", r, err)
			}
		})
	}
}

// restoreNode restores backupFile into a new directory with rootKey and
// serves it; the admin client of the backup signs in.
func restoreNode(t *testing.T, src *node, b storetest.Backend, backupFile, rootKey string) (*node, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	opts := backup.RestoreOptions{DataDir: dir, In: backupFile, RootKeyFile: rootKey, Listen: "127.0.0.1:0"}
	if b.Name != "sqlite" {
		opts.DatabaseURL = b.DSN(t)
	}
	res, err := backup.Restore(context.Background(), opts)
	if err != nil {
		return &node{Server: &testserver.Server{T: t, Dir: dir}, t: t}, err // the directory a failed restore leaves
	}
	n := &node{Server: testserver.At(t, b.Name, dir, app.InitResult{URL: res.URL, ClientID: src.Init.ClientID,
		ClientSecret: src.Init.ClientSecret, CACert: res.CACert}, testserver.Options{}), t: t}
	n.Serve("127.0.0.1:0")
	return n, nil
}

// TestBackupRestoreAndErasure: a backup restored into a new directory
// serves the same data; a subject erased after the backup was taken stays
// unreadable in the restored copy (subject keys never enter a backup), while
// its records are there and every other record reads as before.
func TestBackupRestoreAndErasure(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			n := start(t, b)
			ctx := context.Background()
			if err := n.Admin.CreateCollection(ctx, customers); err != nil {
				t.Fatal(err)
			}
			mk := func(subject, email string) string {
				id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Subject: subject,
					Data: map[string]any{"email": email, "name": "N " + email}})
				if err != nil {
					t.Fatal(err)
				}
				return id
			}
			alice := mk("alice", "alice@example.com")
			plain := mk("", "plain@example.com")
			// The collection key rotated before the backup: both versions travel.
			tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
			if st, b := rotate(n, tok, "collection/customers"); st != 200 {
				t.Fatalf("rotate: %d %s", st, b)
			}
			plain2 := mk("", "plain2@example.com")

			file := filepath.Join(t.TempDir(), "coffer.backup")
			if _, err := app.Backup(ctx, n.Config(), file); err != nil {
				t.Fatalf("backup: %v", err)
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("backup file: %v %v", fi, err)
			}
			if st, _, b := n.do("DELETE", "/v1/subjects/alice", tok, "", nil); st != 200 {
				t.Fatalf("erase: %d %s", st, b)
			}
			if _, err := n.Admin.GetRecord(ctx, "customers", alice); client.StatusCode(err) != 404 {
				t.Fatalf("erased record in the live store: %v", err)
			}

			r, err := restoreNode(t, n, b, file, filepath.Join(n.Dir, "root.key"))
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			for id, email := range map[string]string{plain: "plain@example.com", plain2: "plain2@example.com"} {
				got, err := r.Admin.GetRecord(ctx, "customers", id)
				if err != nil || got.Data["email"] != email || got.Data["name"] != "N "+email {
					t.Fatalf("restored record %s: %v %v", id, got, err)
				}
			}
			if hits, err := r.Admin.Search(ctx, "customers", map[string]any{"email": "plain2@example.com"}, 10); err != nil || len(hits) != 1 {
				t.Fatalf("restored search: %v %v", hits, err)
			}
			// The erased subject's record is in the restored store, sealed,
			// and nothing opens it.
			sealed, err := r.openStore().Record(ctx, "customers", alice)
			if err != nil || sealed.Subject != "alice" || len(sealed.Values) == 0 {
				t.Fatalf("erased subject's record in the restored store: %+v %v", sealed, err)
			}
			rtok := r.Token(r.Init.ClientID, r.Init.ClientSecret)
			st, _, body := r.do("GET", "/v1/collections/customers/records/"+alice, rtok, "", nil)
			if st != 404 || strings.Contains(string(body), "alice@example.com") {
				t.Fatalf("erased subject readable from a pre-erasure backup: %d %s", st, body)
			}
			if hits, err := r.Admin.Search(ctx, "customers", map[string]any{"email": "alice@example.com"}, 10); err != nil || len(hits) != 0 {
				t.Fatalf("erased subject found by its blind index in the restored copy: %v %v", hits, err)
			}
			if strings.Contains(r.Logs.String(), "alice@example.com") {
				t.Fatal("a value reached the restored server's log")
			}
		})
	}
}

// TestRestoreRefusesWrongRootKey: a root key other than the backup's is
// refused and leaves no directory behind.
func TestRestoreRefusesWrongRootKey(t *testing.T) {
	b := storetest.Backends()[0]
	n := start(t, b)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "coffer.backup")
	if _, err := app.Backup(ctx, n.Config(), file); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	if err := keyprovider.CreateFile(other, rand.Reader); err != nil {
		t.Fatal(err)
	}
	r, err := restoreNode(t, n, b, file, other)
	if !errors.Is(err, backup.ErrWrongRootKey) || !strings.Contains(err.Error(), "wrong root key") {
		t.Fatalf("restore with another root key: %v", err)
	}
	if _, err := os.Stat(r.Dir); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left %s behind: %v", r.Dir, err)
	}
	// An empty directory given by the operator is left empty.
	empty := t.TempDir()
	if _, err := backup.Restore(ctx, backup.RestoreOptions{DataDir: empty, In: file, RootKeyFile: other}); !errors.Is(err, backup.ErrWrongRootKey) {
		t.Fatalf("restore into an empty dir with another key: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("a failed restore left %d files in the operator's directory", len(entries))
	}
	// Never into an initialised directory.
	if _, err := backup.Restore(ctx, backup.RestoreOptions{DataDir: n.Dir, In: file, RootKeyFile: filepath.Join(n.Dir, "root.key")}); !errors.Is(err, app.ErrInitialised) {
		t.Fatalf("restore over a deployment: %v", err)
	}
}

// TestShamirSealUnseal: a deployment whose root key is split starts sealed
// (live, not ready, every API route 503), takes shares over HTTPS, and
// serves once the threshold is reached; a restart seals it again.
func TestShamirSealUnseal(t *testing.T) {
	n := &node{Server: testserver.New(t, storetest.Backends()[0], testserver.Options{Init: app.InitOptions{Shares: 5, Threshold: 3}}), t: t}
	shares := n.Init.UnsealShares
	if len(shares) != 5 {
		t.Fatalf("init made %d shares", len(shares))
	}
	if _, err := os.Stat(filepath.Join(n.Dir, "root.key")); !os.IsNotExist(err) {
		t.Fatalf("a shamir root key was written to disk: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(n.Dir, "root-key.check")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("check file: %v %v", fi, err)
	}
	n.Serve("127.0.0.1:0")

	sealedChecks := func() {
		t.Helper()
		if st, _, _ := n.do("GET", "/healthz", "", "", nil); st != 200 {
			t.Fatalf("healthz while sealed: %d", st)
		}
		if st, _, _ := n.do("GET", "/readyz", "", "", nil); st != 503 {
			t.Fatalf("readyz while sealed: %d", st)
		}
		for _, p := range []struct{ method, path string }{{"GET", "/v1/collections"}, {"POST", "/v1/oauth/token"}, {"GET", "/v1/openapi.json"}} {
			st, h, b := n.do(p.method, p.path, "", "", nil)
			if st != 503 || h.Get("Content-Type") != "application/problem+json" || h.Get("Retry-After") == "" {
				t.Fatalf("%s %s while sealed: %d %v %s", p.method, p.path, st, h, b)
			}
		}
	}
	sealedChecks()
	unseal := func(share string) (int, app.InitResult, []byte) {
		st, _, b := n.postJSON("/v1/sys/unseal", "", map[string]string{"share": share})
		return st, app.InitResult{}, b
	}
	if st, _, b := unseal("cs1-not-a-share"); st != 422 {
		t.Fatalf("garbage share: %d %s", st, b)
	}
	for i, want := range []string{`{"sealed":true,"progress":1,"threshold":3}`, `{"sealed":true,"progress":2,"threshold":3}`} {
		st, _, b := unseal(shares[i*2])
		if st != 200 || strings.TrimSpace(string(b)) != want {
			t.Fatalf("share %d: %d %s", i, st, b)
		}
	}
	sealedChecks()
	if st, _, b := n.do("GET", "/v1/sys/seal-status", "", "", nil); st != 200 || strings.TrimSpace(string(b)) != `{"sealed":true,"progress":2,"threshold":3}` {
		t.Fatalf("seal-status while sealed: %d %s", st, b)
	}
	st, _, b := unseal(shares[4])
	if st != 200 || strings.TrimSpace(string(b)) != `{"sealed":false,"progress":3,"threshold":3}` {
		t.Fatalf("last share: %d %s", st, b)
	}
	if st, _, b := n.do("GET", "/readyz", "", "", nil); st != 200 {
		t.Fatalf("readyz after unseal: %d %s", st, b)
	}
	ctx := context.Background()
	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		t.Fatalf("serving after unseal: %v", err)
	}
	id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Data: map[string]any{"email": "s@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shares {
		if strings.Contains(n.Logs.String(), s) {
			t.Fatal("a share reached the log")
		}
	}
	if !strings.Contains(n.Logs.String(), `"event":"unseal"`) {
		t.Fatal("unseal attempts are not logged")
	}

	// A restart forgets the key: sealed again until shares come again
	// (any three of the five).
	n.Restart()
	sealedChecks()
	for _, s := range shares[1:4] {
		if st, _, b := unseal(s); st != 200 {
			t.Fatalf("unseal after restart: %d %s", st, b)
		}
	}
	if r, err := n.Admin.GetRecord(ctx, "customers", id); err != nil || r.Data["email"] != "s@example.com" {
		t.Fatalf("read after unseal: %v %v", r, err)
	}
	if st, _, _ := n.do("GET", "/healthz", "", "", nil); st != http.StatusOK {
		t.Fatal("healthz after unseal")
	}
}

// TestIndexKeyRotationAndReindex: a field's blind index key rotated while
// records exist; search finds old and new records at once (it looks under
// both versions), the reindex moves every entry to the new version, and
// search still finds them all afterwards, by the new version alone.
func TestIndexKeyRotationAndReindex(t *testing.T) {
	for _, be := range storetest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			// The reindex waits 2 s after the rotation (as it waits for
			// every node's key cache on PostgreSQL): old entries are
			// certainly there when the search right after looks for them.
			testIndexKeyRotation(t, startWith(t, be, app.Options{ReindexAfter: 2 * time.Second}))
		})
	}
}

func testIndexKeyRotation(t *testing.T, n *node) {
	{
		ctx := context.Background()
		if err := n.Admin.CreateCollection(ctx, customers); err != nil {
			t.Fatal(err)
		}
		emails := map[string]string{}
		add := func(email string) {
			id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": email}})
			if err != nil {
				t.Fatal(err)
			}
			emails[email] = id
		}
		for i := range 5 {
			add(fmt.Sprintf("old%d@example.com", i))
		}
		findAll := func(when string) {
			t.Helper()
			for email, id := range emails {
				hits, err := n.Admin.Search(ctx, "customers", map[string]any{"email": strings.ToUpper(email)}, 10)
				if err != nil || len(hits) != 1 || hits[0].ID != id {
					t.Fatalf("%s: search %s: %v %v", when, email, hits, err)
				}
			}
		}
		findAll("before rotation")
		tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
		st, b := rotate(n, tok, "index/customers/email")
		if st != 200 || !strings.Contains(string(b), `"reindex_scheduled":true`) || !strings.Contains(string(b), `"version":2`) {
			t.Fatalf("rotate the index key: %d %s", st, b)
		}
		add("new@example.com")
		db := n.openStore()
		if stale, err := db.StaleIndexEntries(ctx, "customers", "email", 2, "", 100); err != nil || len(stale) != 5 {
			t.Fatalf("right after the rotation: %d entries under version 1, %v; want 5", len(stale), err)
		}
		findAll("right after the rotation (old entries under version 1, the new one under 2)")
		waitFor(t, "the reindex to move every entry to version 2", func() bool {
			stale, err := db.StaleIndexEntries(ctx, "customers", "email", 2, "", 100)
			if err != nil {
				t.Fatal(err)
			}
			return len(stale) == 0
		})
		findAll("after the reindex")
		// Nothing under version 1 any more: it is retired, and search
		// (which looks under active versions only) still finds every record.
		waitFor(t, "version 1 of the index key to be retired", func() bool {
			ks, err := db.DataKeys(ctx, "index/customers/email")
			if err != nil {
				t.Fatal(err)
			}
			return len(ks) == 2 && ks[0].Version == 1 && ks[0].State == coffer.KeyRetired && ks[1].State == coffer.KeyActive
		})
		n.Restart() // a fresh key cache: version 1 is known only as retired
		findAll("with version 1 retired")
		// Moved, not copied: one entry per record, every one under version 2.
		all, err := db.StaleIndexEntries(ctx, "customers", "email", 3, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(emails) {
			t.Fatalf("%d index entries for %d records", len(all), len(emails))
		}
		for _, e := range all {
			if e.Version != 2 {
				t.Fatalf("entry of %s under version %d", e.RecordID, e.Version)
			}
		}
	}
}
