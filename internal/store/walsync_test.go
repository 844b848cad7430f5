package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openSQLiteTest(t *testing.T) *DB {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "coffer.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// putMeta writes through the group commit, as every SQLite transaction does.
func putMeta(ctx context.Context, db *DB, key, value string) error {
	return db.inTx(ctx, func(q querier) error {
		_, err := q.exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2`, key, value)
		return err
	})
}

// A group-commit write returns only after an fsync of the WAL that began
// after its commit, and one fsync serves every batch committed meanwhile.
func TestGroupCommitWaitsForTheWALSync(t *testing.T) {
	ctx := context.Background()
	db := openSQLiteTest(t)
	s := db.group.syncer
	started := make(chan struct{}, 100)
	release := make(chan struct{})
	var mu sync.Mutex
	syncs := 0
	s.syncFile = func(f *os.File) error {
		started <- struct{}{}
		<-release
		mu.Lock()
		syncs++
		mu.Unlock()
		return fdatasync(f)
	}
	done := make(chan error, 10)
	go func() { done <- putMeta(ctx, db, "k0", "v") }()
	<-started // k0 is committed; its sync is under way and held
	for i := range 9 {
		go func() { done <- putMeta(ctx, db, "k"+string(rune('1'+i)), "v") }()
	}
	select {
	case err := <-done:
		t.Fatalf("a write returned (%v) before its WAL sync finished", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The nine later writes commit meanwhile (the connection is free) and
	// wait for the next sync, which must start after they committed.
	deadline := time.After(10 * time.Second)
	for {
		var n int
		if err := db.read.queryRow(ctx, `SELECT COUNT(*) FROM meta WHERE key LIKE 'k%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 10 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("%d of 10 writes committed while a sync was held", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(release)
	for range 10 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if syncs < 2 || syncs > 10 {
		t.Fatalf("%d syncs for 10 writes, 9 of them committed during the first sync: want 2 to 10", syncs)
	}
	t.Logf("%d syncs for 10 writes", syncs)
}

// Only the group commit's batches relax the sync: the connection is back
// at synchronous=FULL (2) for every other write.
func TestGroupCommitRestoresFullSync(t *testing.T) {
	ctx := context.Background()
	db := openSQLiteTest(t)
	for i := range 5 {
		if err := putMeta(ctx, db, "k", string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	var mode int
	if err := db.write.queryRow(ctx, `PRAGMA synchronous`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 {
		t.Fatalf("synchronous = %d after group commits, want 2 (FULL)", mode)
	}
}

// A failed WAL sync fails the write, and every later one: the kernel may
// have dropped what it could not write, so no later sync vouches for it.
func TestGroupCommitFailsClosedOnSyncError(t *testing.T) {
	ctx := context.Background()
	db := openSQLiteTest(t)
	if err := putMeta(ctx, db, "before", "v"); err != nil {
		t.Fatal(err)
	}
	eio := errors.New("input/output error")
	db.group.syncer.syncFile = func(*os.File) error { return eio }
	if err := putMeta(ctx, db, "k", "v"); !errors.Is(err, ErrSyncFailed) || !errors.Is(err, eio) {
		t.Fatalf("write with a failing sync: %v, want ErrSyncFailed wrapping the cause", err)
	}
	db.group.syncer.syncFile = fdatasync
	if err := putMeta(ctx, db, "k2", "v"); !errors.Is(err, ErrSyncFailed) {
		t.Fatalf("write after a failed sync: %v, want ErrSyncFailed", err)
	}
	// A failed caller's own error still comes back as it was.
	bad := errors.New("caller failed")
	if err := db.inTx(ctx, func(querier) error { return bad }); !errors.Is(err, bad) {
		t.Fatalf("failing caller: %v", err)
	}
}
