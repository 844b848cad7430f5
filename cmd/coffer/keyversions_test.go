package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/keyadmin"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// initWithSubjectRecord initialises a SQLite deployment holding record r1
// of collection people, sealed under subject s1's key, and returns its data
// directory.
func initWithSubjectRecord(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, errs := runCLI(t, "init", "--data-dir", dir); code != 0 {
		t.Fatal(errs)
	}
	withKeyring(t, dir, func(kr *keyring.Keyring, db *store.DB) {
		if err := db.CreateCollection(context.Background(), coffer.Collection{Name: "people", CreatedAt: time.Now().UTC(),
			Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail}}}); err != nil {
			t.Fatal(err)
		}
		putSubjectRecord(t, kr, db, "r1", "s1", "a@example.com")
	})
	return dir
}

// TestRetireDestroyKeyVersionCLI: `coffer keys retire|unretire|destroy`
// offline on SQLite: refused while the newer version is too young and
// while a value is sealed under the old one; after the rewrap the old
// version is retired, brought back, retired and destroyed, and the record
// still opens under the new version.
func TestRetireDestroyKeyVersionCLI(t *testing.T) {
	ctx := context.Background()
	dir := initWithSubjectRecord(t)
	if code, out, errs := runCLI(t, "keys", "rotate", "--data-dir", dir, "subject/s1"); code != 0 || !strings.Contains(out, "version 2") {
		t.Fatalf("rotate: %d %q %q", code, out, errs)
	}
	code, _, errs := runCLI(t, "keys", "retire", "--data-dir", dir, "subject/s1", "1")
	if code != 1 || !strings.Contains(errs, "retry at") {
		t.Fatalf("retire while version 2 is new: %d %q", code, errs)
	}
	// Time passes: version 2 is older than the key cache time and margin.
	raw, err := sql.Open("sqlite", filepath.Join(dir, "coffer.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(ctx, `UPDATE data_keys SET created_at = created_at - ? WHERE key_id = ?`,
		(keyadmin.DefaultRetireAfter + time.Second).Microseconds(), "subject/s1"); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, "keys", "retire", "--data-dir", dir, "subject/s1", "1")
	if code != 1 || !strings.Contains(errs, "1 stored values are still sealed under version 1") {
		t.Fatalf("retire before the rewrap: %d %q", code, errs)
	}
	withKeyring(t, dir, func(kr *keyring.Keyring, db *store.DB) {
		rep, err := lifecycle.New(lifecycle.Config{Store: db, Keys: kr, Node: "cli-test"}).Rewrap(ctx, 0)
		if err != nil || rep.Rewrapped != 1 {
			t.Fatalf("rewrap: %+v %v", rep, err)
		}
	})
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"destroy", "subject/s1", "1"}, 1, "retire it first"},
		{[]string{"retire", "subject/s1", "2"}, 1, "encrypts"},
		{[]string{"retire", "subject/s1", "x"}, 2, "VERSION"},
		{[]string{"retire", "subject/s1", "0"}, 2, "VERSION"},
		{[]string{"retire", "subject/s1"}, 1, "accepts 2 arg"},
		{[]string{"retire", "index/people/email", "1"}, 1, "cannot"},
		{[]string{"retire", "subject/nobody", "1"}, 1, "no such key"},
		{[]string{"retire", "subject/s1", "1"}, 0, "subject/s1 version 1 retired"},
		{[]string{"unretire", "subject/s1", "1"}, 0, "active again"},
		{[]string{"retire", "subject/s1", "1"}, 0, "retired"},
		{[]string{"destroy", "subject/s1", "1"}, 0, "subject/s1 version 1 destroyed"},
		{[]string{"unretire", "subject/s1", "1"}, 1, "final"},
		{[]string{"retire", "subject/s1", "1"}, 1, "final"},
	} {
		args := append([]string{"keys", tc.args[0], "--data-dir", dir}, tc.args[1:]...)
		code, out, errs := runCLI(t, args...)
		if code != tc.code || !strings.Contains(out+errs, tc.says) {
			t.Fatalf("keys %v: %d %q %q, want %d saying %q", tc.args, code, out, errs, tc.code, tc.says)
		}
	}
	withKeyring(t, dir, func(kr *keyring.Keyring, db *store.DB) {
		r, err := db.Record(ctx, "people", "r1")
		if err != nil {
			t.Fatal(err)
		}
		// The rewrap moved the record, written in the format before
		// revisions, to revision 1: its AAD names the revision.
		pt, err := kr.Open(ctx, "subject/s1", r.Values["email"], envelope.AAD("people", "r1", "email", "1"))
		if err != nil || string(pt) != "a@example.com" {
			t.Fatalf("the record after destroying version 1: %q %v", pt, err)
		}
	})
}

// TestRetireKeyVersionCLIDeployments: the commands take --database-url
// (PostgreSQL) and --unseal-shares-stdin (Shamir) like keys rotate.
func TestRetireKeyVersionCLIDeployments(t *testing.T) {
	pg := filepath.Join(t.TempDir(), "pg")
	url := storetest.PostgresDSN(t)
	if code, _, errs := runCLI(t, "init", "--data-dir", pg, "--database-url", url); code != 0 {
		t.Fatal(errs)
	}
	for _, op := range []string{"retire", "unretire", "destroy"} {
		code, _, errs := runCLI(t, "keys", op, "--data-dir", pg, "--database-url", url, "collection/none", "1")
		if code != 1 || !strings.Contains(errs, "no such key") {
			t.Fatalf("%s on PostgreSQL: %d %q", op, code, errs)
		}
	}
	if code, _, errs := runCLI(t, "keys", "destroy", "--data-dir", pg, "--database-url", url, "audit/hmac", "1"); code != 1 || !strings.Contains(errs, "cannot") {
		t.Fatalf("destroy an audit key version: %d %q", code, errs)
	}

	sh := filepath.Join(t.TempDir(), "s")
	code, out, errs := runCLI(t, "init", "--data-dir", sh, "--shares", "3", "--threshold", "2", "--json")
	if code != 0 {
		t.Fatal(errs)
	}
	var res struct {
		Shares []string `json:"unseal_shares"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Shares) != 3 {
		t.Fatalf("init --json: %q %v", out, err)
	}
	code, out, errs = runCLIIn(t, res.Shares[0]+"\n"+res.Shares[2]+"\n", "keys", "retire", "--data-dir", sh, "--unseal-shares-stdin", "tokens/ssn", "1")
	if code != 1 || !strings.Contains(errs, "no such key") {
		t.Fatalf("retire on a Shamir deployment: %d %q %q", code, out, errs)
	}
}

// TestRestoreAfterDestroyingSubjectKeyVersion: a backup taken before an
// old subject key version was rewrapped away and destroyed restores with
// the live deployment's subject keys; the values still under the destroyed
// version are reported unreadable, the restore does not fail, and the
// destroyed version does not come back.
func TestRestoreAfterDestroyingSubjectKeyVersion(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	live := filepath.Join(tmp, "live")
	if code, _, errs := runCLI(t, "init", "--data-dir", live); code != 0 {
		t.Fatal(errs)
	}
	withKeyring(t, live, func(kr *keyring.Keyring, db *store.DB) {
		if err := db.CreateCollection(ctx, coffer.Collection{Name: "people", CreatedAt: time.Now().UTC(),
			Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail, Searchable: true}}}); err != nil {
			t.Fatal(err)
		}
		putSubjectRecord(t, kr, db, "r1", "amy", "amy@example.com")
	})
	b1 := filepath.Join(tmp, "b1.backup")
	if code, _, errs := runCLI(t, "backup", "--data-dir", live, "--out", b1); code != 0 {
		t.Fatal(errs)
	}
	withKeyring(t, live, func(kr *keyring.Keyring, db *store.DB) {
		if _, err := kr.Rotate(ctx, "subject/amy"); err != nil {
			t.Fatal(err)
		}
		jobs := lifecycle.New(lifecycle.Config{Store: db, Keys: kr, Node: "cli-test"})
		if err := jobs.RequestRewrap(ctx); err != nil {
			t.Fatal(err)
		}
		if rep, err := jobs.Rewrap(ctx, 0); err != nil || rep.Rewrapped != 1 {
			t.Fatalf("rewrap: %+v %v", rep, err)
		}
		if err := kr.Retire(ctx, "subject/amy", 1); err != nil {
			t.Fatal(err)
		}
		if err := kr.DestroyVersion(ctx, "subject/amy", 1); err != nil {
			t.Fatal(err)
		}
	})
	r := filepath.Join(tmp, "r")
	code, out, errs := runCLI(t, "restore", "--data-dir", r, "--in", b1, "--root-key-file", filepath.Join(live, "root.key"),
		"--subject-keys-from-data-dir", live)
	if code != 0 || !strings.Contains(out, "restored:          1") || !strings.Contains(out, "1 values") {
		t.Fatalf("restore: %d %s %s", code, out, errs)
	}
	withKeyring(t, r, func(kr *keyring.Keyring, db *store.DB) {
		ks, err := db.DataKeys(ctx, "subject/amy")
		if err != nil || len(ks) != 2 || ks[0].State != coffer.KeyDestroyed || len(ks[0].Wrapped) != 0 || ks[1].State != coffer.KeyActive {
			t.Fatalf("restored subject key: %+v %v", ks, err)
		}
		rec, err := db.Record(ctx, "people", "r1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kr.Open(ctx, "subject/amy", rec.Values["email"], envelope.AAD("people", "r1", "email")); !errors.Is(err, keyring.ErrVersionDestroyed) {
			t.Fatalf("a restored value under the destroyed version: %v", err)
		}
	})
}

// offlineEvents returns the events of dir's offline audit chains, oldest
// first, as "ACTION RESOURCE OUTCOME" (the reason up to its first colon),
// after checking that each names an operator and was allowed.
func offlineEvents(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	withKeyring(t, dir, func(_ *keyring.Keyring, db *store.DB) {
		evs, err := audit.OnRows(db).ListAudit(context.Background(), audit.Filter{Limit: audit.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if !strings.HasSuffix(e.Node, auditadmin.OfflineNodeSuffix) {
				continue
			}
			if e.PrincipalKind != coffer.KindOperator || !strings.HasPrefix(e.PrincipalID, "os") || e.Decision != audit.DecisionAllow {
				t.Errorf("offline event %s: principal %s %q, decision %q", e.ID, e.PrincipalKind, e.PrincipalID, e.Decision)
			}
			got = append(got, e.Action+" "+e.Resource+" "+strings.SplitN(e.Reason, ":", 2)[0])
		}
	})
	return got
}

// TestOfflineKeyOperationsAudited: `coffer keys …` and `coffer backup`
// write each operation to the deployment's offline audit chain, before (no event, nothing done)
// and after (the outcome); audit verify checks that chain too.
func TestOfflineKeyOperationsAudited(t *testing.T) {
	ctx := context.Background()
	dir := initWithSubjectRecord(t)
	if code, _, errs := runCLI(t, "keys", "rotate", "--data-dir", dir, "subject/s1"); code != 0 {
		t.Fatal(errs)
	}
	if code, _, _ := runCLI(t, "keys", "retire", "--data-dir", dir, "subject/s1", "1"); code != 1 {
		t.Fatal("retire of a version just replaced succeeded")
	}
	if code, _, errs := runCLI(t, "backup", "--data-dir", dir, "--out", filepath.Join(t.TempDir(), "b.coffer")); code != 0 {
		t.Fatalf("backup: %s", errs)
	}
	got := offlineEvents(t, dir)
	want := []string{
		"keys.rotate system/keys/subject/s1 started", "keys.rotate system/keys/subject/s1 done",
		"keys.retire system/keys/subject/s1/versions/1 started", "keys.retire system/keys/subject/s1/versions/1 " + coffer.ECONFLICT,
		"backup deployment started", "backup deployment done",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("offline audit events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("audit verify: %d %q %q", code, out, errs)
	}

	// Offline commands run at once share the chain: each still gets its
	// events in, and the chain verifies.
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Go(func() {
			codes[i], _, _ = runCLI(t, "backup", "--data-dir", dir, "--out", filepath.Join(t.TempDir(), fmt.Sprintf("b%d.coffer", i)))
		})
	}
	wg.Wait()
	if slices.ContainsFunc(codes, func(c int) bool { return c != 0 }) {
		t.Fatalf("concurrent backups: exit codes %v", codes)
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "ok: ") {
		t.Fatalf("audit verify after concurrent offline commands: %d %q %q", code, out, errs)
	}

	// No audit, no operation: with the offline chain unwritable the
	// rotation is refused and the key keeps its version.
	raw, err := sql.Open("sqlite", filepath.Join(dir, "coffer.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(ctx, `CREATE TRIGGER refuse_offline BEFORE INSERT ON audit_log
		WHEN NEW.node LIKE '%/offline' BEGIN SELECT RAISE(ABORT, 'audit disk gone'); END`); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "keys", "rotate", "--data-dir", dir, "subject/s1")
	if code != 1 || !strings.Contains(errs, "audit log unavailable, nothing done") {
		t.Fatalf("rotate with the audit log unwritable: %d %q", code, errs)
	}
	withKeyring(t, dir, func(kr *keyring.Keyring, _ *store.DB) {
		if v, err := kr.CurrentVersion(ctx, "subject/s1"); err != nil || v != 2 {
			t.Fatalf("subject/s1 is at version %d (%v) after a refused rotation, want 2", v, err)
		}
	})
}
