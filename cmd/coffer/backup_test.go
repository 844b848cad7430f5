package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// withKeyring runs fn with the store of the SQLite deployment in dir and a
// keyring over it.
func withKeyring(t *testing.T, dir string, fn func(kr *keyring.Keyring, db *store.DB)) {
	t.Helper()
	ctx := context.Background()
	p, err := keyprovider.OpenFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(dir, "coffer.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kr := keyring.New(p, db, keyring.Options{})
	defer kr.Close()
	fn(kr, db)
}

// putSubjectRecord stores a record of subject whose searchable email is
// sealed under the subject's key, as a write would.
func putSubjectRecord(t *testing.T, kr *keyring.Keyring, db *store.DB, id, subject, email string) {
	t.Helper()
	ctx := context.Background()
	env, err := kr.Seal(ctx, "subject/"+subject, []byte(email), envelope.AAD("people", id, "email"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := db.InsertRecord(ctx, coffer.SealedRecord{ID: id, Collection: "people", Subject: subject, KeyID: "subject/" + subject,
		CreatedAt: now, UpdatedAt: now, Values: map[string][]byte{"email": env}}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreSubjectKeysCLI: restore takes subject keys from another
// deployment under the same root key, by data directory or by PostgreSQL
// URL, says what came back, and refuses a source under another root key
// without leaving anything behind.
func TestRestoreSubjectKeysCLI(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	live := filepath.Join(tmp, "live")
	if code, _, errs := runCLI(t, "init", "--data-dir", live); code != 0 {
		t.Fatal(errs)
	}
	b0 := filepath.Join(tmp, "b0.backup")
	if code, _, errs := runCLI(t, "backup", "--data-dir", live, "--out", b0); code != 0 {
		t.Fatal(errs)
	}
	// Two subjects get keys after b0 and before b1; zed is erased after b1.
	withKeyring(t, live, func(kr *keyring.Keyring, db *store.DB) {
		if err := db.CreateCollection(ctx, coffer.Collection{Name: "people", CreatedAt: time.Now().UTC(),
			Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail, Searchable: true}}}); err != nil {
			t.Fatal(err)
		}
		putSubjectRecord(t, kr, db, "r1", "amy", "amy@example.com")
		putSubjectRecord(t, kr, db, "r2", "zed", "zed@example.com")
	})
	b1 := filepath.Join(tmp, "b1.backup")
	if code, _, errs := runCLI(t, "backup", "--data-dir", live, "--out", b1); code != 0 {
		t.Fatal(errs)
	}
	withKeyring(t, live, func(kr *keyring.Keyring, _ *store.DB) {
		if err := kr.Destroy(ctx, "subject/zed"); err != nil {
			t.Fatal(err)
		}
	})
	rootKey := filepath.Join(live, "root.key")
	restore := func(dir, in string, extra ...string) (int, string, string) {
		return runCLI(t, append([]string{"restore", "--data-dir", dir, "--in", in, "--root-key-file", rootKey}, extra...)...)
	}

	r1 := filepath.Join(tmp, "r1")
	code, out, errs := restore(r1, b1, "--subject-keys-from-data-dir", live)
	if code != 0 {
		t.Fatalf("restore with the live deployment's keys: %d %s %s", code, out, errs)
	}
	for _, want := range []string{"restored:          1 (their values read again; 1 search index entries rebuilt)", "erased there:      1", "missing there:     0", "an erasure must be made here too"} {
		if !strings.Contains(out, want) {
			t.Fatalf("restore output lacks %q:\n%s", want, out)
		}
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--data-dir", r1); code != 0 {
		t.Fatalf("the restored deployment: %d %s %s", code, out, errs)
	}
	// The restore is on the restored deployment's offline chain, after
	// the backup's start (its end is written after the snapshot).
	want := []string{"backup deployment started", "backup deployment done", "backup deployment started",
		"restore deployment started", "restore deployment done"}
	if got := offlineEvents(t, r1); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the restored deployment's offline events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A deployment under the same root key that never had those subjects
	// (b0 restored without a source): both are missing there.
	old := filepath.Join(tmp, "old")
	code, out, _ = restore(old, b0)
	if code != 0 || !strings.Contains(out, "--subject-keys-from-data-dir") {
		t.Fatalf("restore without a source: %d %s", code, out)
	}
	code, out, errs = restore(filepath.Join(tmp, "r2"), b1, "--subject-keys-from-data-dir", old)
	if code != 0 || !strings.Contains(out, "restored:          0") || !strings.Contains(out, "missing there:     2") {
		t.Fatalf("restore from a source without the subjects: %d %s %s", code, out, errs)
	}

	// A source under the same root key whose key for amy is another one
	// (made there after the restore): amy's values do not open, and the
	// restore fails after the import, removing what it made.
	withKeyring(t, old, func(kr *keyring.Keyring, _ *store.DB) {
		if _, err := kr.Seal(ctx, "subject/amy", []byte("v"), envelope.AAD("c", "r", "f")); err != nil {
			t.Fatal(err)
		}
	})
	r4 := filepath.Join(tmp, "r4")
	code, out, errs = restore(r4, b1, "--subject-keys-from-data-dir", old)
	if code != 1 || !strings.Contains(errs, "not the deployment this backup was taken from") {
		t.Fatalf("restore from a source with other subject keys: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(r4); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left %s behind: %v", r4, err)
	}

	// A source under another root key, and sources that are not one.
	other := filepath.Join(tmp, "other")
	if code, _, errs := runCLI(t, "init", "--data-dir", other); code != 0 {
		t.Fatal(errs)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"another root key", []string{"--subject-keys-from-data-dir", other}, "root key"},
		{"an uninitialised directory", []string{"--subject-keys-from-data-dir", t.TempDir()}, "not an initialised deployment"},
		{"a database URL that is not PostgreSQL's", []string{"--subject-keys-from-database-url", filepath.Join(live, "coffer.db")}, "postgres://"},
	} {
		r := filepath.Join(tmp, "refused")
		code, out, errs := restore(r, b1, tc.args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Fatalf("restore with %s: %d %q %q", tc.name, code, out, errs)
		}
		if _, err := os.Stat(r); !os.IsNotExist(err) {
			t.Fatalf("restore with %s left %s behind: %v", tc.name, r, err)
		}
	}

	// A PostgreSQL deployment as the source, named by its URL.
	pgURL := storetest.PostgresDSN(t)
	pgLive := filepath.Join(tmp, "pglive")
	if code, _, errs := runCLI(t, "init", "--data-dir", pgLive, "--database-url", pgURL); code != 0 {
		t.Fatal(errs)
	}
	pgBackup := filepath.Join(tmp, "pg.backup")
	if code, _, errs := runCLI(t, "backup", "--data-dir", pgLive, "--out", pgBackup); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs = runCLI(t, "restore", "--data-dir", filepath.Join(tmp, "r3"), "--in", pgBackup,
		"--root-key-file", filepath.Join(pgLive, "root.key"), "--subject-keys-from-database-url", pgURL)
	if code != 0 || !strings.Contains(out, "restored:          0") {
		t.Fatalf("restore with a PostgreSQL source: %d %s %s", code, out, errs)
	}
	if strings.Contains(out+errs, pgURL) {
		t.Fatal("the source's database URL was echoed")
	}
}
