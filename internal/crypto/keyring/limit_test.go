package keyring

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// SetDataKeyUses makes memStore a UseResetStore, like the SQL stores.
func (s *memStore) SetDataKeyUses(_ context.Context, keyID string, version uint32, n uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[keyID][version]; ok {
		k.Uses, k.RewrapUses = n, 0
		s.keys[keyID][version] = k
	}
	return nil
}

func wantUseLimit(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, ErrUseLimit) || coffer.ErrorCode(err) != coffer.EUNAVAILABLE {
		t.Fatalf("%s: %v, want ErrUseLimit as a 503", what, err)
	}
}

// #16.7: a version that sealed SealLimit values seals no more, however
// many of them this node made, another node made (its count arriving
// through the Store), or the rewrap made; SealVersion and Reseal refuse
// too. Nothing past the bound is ever encrypted.
func TestSealStopsAtTheUseLimit(t *testing.T) {
	f := newFixture(t)
	kr := New(f.p, f.s, Options{Now: f.clock.Now, SealLimit: 5})
	const id = "collection/c"
	for i := range 5 {
		if _, err := kr.Seal(ctx, id, []byte("v"), envelope.AAD(id)); err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
	}
	_, err := kr.Seal(ctx, id, []byte("v"), envelope.AAD(id))
	wantUseLimit(t, err, "the sixth seal")
	_, err = kr.Reseal(ctx, id, []byte("v"), envelope.AAD(id))
	wantUseLimit(t, err, "a reseal")
	_, err = kr.SealVersion(ctx, id, 1, []byte("v"), envelope.AAD(id))
	wantUseLimit(t, err, "SealVersion")

	// Flushing and reloading never forgets a seal.
	if err := kr.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	_, err = kr.Seal(ctx, id, []byte("v"), envelope.AAD(id))
	wantUseLimit(t, err, "after a flush and a reload")

	// Another node's seals count once they reach the Store.
	other := New(f.p, f.s, Options{Now: f.clock.Now, SealLimit: 5})
	_, err = other.Seal(ctx, id, []byte("v"), envelope.AAD(id))
	wantUseLimit(t, err, "another node")
	const id2 = "collection/d"
	for range 3 {
		seal(t, other, id2, "x")
	}
	if err := other.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute) // kr's cache of id2, if any, is stale
	for range 2 {
		seal(t, kr, id2, "x")
	}
	_, err = kr.Seal(ctx, id2, []byte("v"), envelope.AAD(id2))
	wantUseLimit(t, err, "a key whose seals came from two nodes")
	if f.s.uses(id, 1) != 5 {
		t.Fatalf("store counts %d seals under %s v1, want 5", f.s.uses(id, 1), id)
	}
}

// With RotateAtLimit (automatic rotation configured), a Seal that finds
// the key at its bound rotates it, once however many callers find it so
// at the same time, and seals under the new version; a Reseal does not
// rotate (the rewrap would only fill the new version with the same
// values).
func TestSealRotatesAtTheUseLimit(t *testing.T) {
	f := newFixture(t)
	var rotations atomic.Int64
	var mu sync.Mutex
	var seen [][2]uint32
	kr := New(f.p, f.s, Options{Now: f.clock.Now, SealLimit: 4, RotateAtLimit: true,
		OnLimitRotate: func(keyID string, from, to uint32) {
			rotations.Add(1)
			mu.Lock()
			seen = append(seen, [2]uint32{from, to})
			mu.Unlock()
		}})
	const id = "collection/c"
	for range 4 {
		seal(t, kr, id, "v")
	}
	_, err := kr.Reseal(ctx, id, []byte("v"), envelope.AAD(id))
	wantUseLimit(t, err, "a reseal at the limit")
	var wg sync.WaitGroup
	envs := make([][]byte, 3)
	for i := range envs {
		wg.Go(func() {
			env, err := kr.Seal(ctx, id, []byte("v"), envelope.AAD(id))
			if err != nil {
				t.Errorf("seal at the limit: %v", err)
				return
			}
			envs[i] = env
		})
	}
	wg.Wait()
	if rotations.Load() != 1 || seen[0] != [2]uint32{1, 2} || f.s.versions(id) != 2 {
		t.Fatalf("%d rotations %v, %d versions: want one, from 1 to 2", rotations.Load(), seen, f.s.versions(id))
	}
	for _, env := range envs {
		if v, err := envelope.KeyVersion(env); err != nil || v != 2 {
			t.Fatalf("sealed under version %d (%v), want 2", v, err)
		}
	}
}

// #16.7: every wrap under the root key is counted, across nodes through
// the Store; at the limit no data key is made; a root key rotation counts
// again from the wraps it made under the new key.
func TestRootKeyWrapsAreCounted(t *testing.T) {
	f := newFixture(t)
	s := &rewrapStore{memStore: f.s}
	kr := New(f.p, s, Options{Now: f.clock.Now, SealLimit: 8})
	if err := kr.Check(ctx); err != nil { // the check key: one wrap
		t.Fatal(err)
	}
	for _, id := range []string{"collection/a", "collection/b", "subject/s1"} {
		seal(t, kr, id, "v")
	}
	if _, err := kr.Rotate(ctx, "collection/a"); err != nil {
		t.Fatal(err)
	}
	if n, err := kr.RootWraps(ctx); err != nil || n != 5 {
		t.Fatalf("root wraps %d (%v), want 5", n, err)
	}
	if err := kr.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	other := New(f.p, s, Options{Now: f.clock.Now, SealLimit: 8})
	if n, err := other.RootWraps(ctx); err != nil || n != 5 {
		t.Fatalf("another node sees %d root wraps (%v), want 5", n, err)
	}
	seal(t, other, "subject/s2", "v")
	seal(t, other, "subject/s3", "v")
	if err := other.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute) // kr reads the Store's count again
	seal(t, kr, "subject/s4", "v")
	_, err := kr.Seal(ctx, "subject/s5", []byte("v"), envelope.AAD("subject/s5"))
	wantUseLimit(t, err, "a new key under a root key at its bound")
	if _, err := kr.Rotate(ctx, "collection/b"); !errors.Is(err, ErrUseLimit) {
		t.Fatalf("a rotation under a root key at its bound: %v", err)
	}

	// A new root key counts only what it wrapped: the probe and every
	// version moved (erased subjects' keys are not moved).
	for _, id := range []string{"subject/s1", "subject/s2", "subject/s3", "subject/s4"} {
		if err := kr.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	newP := newProvider(t)
	moved, err := kr.RewrapRoot(ctx, newP, s)
	if err != nil {
		t.Fatal(err)
	}
	if moved != 4 { // the check key, collection/a v1 and v2, collection/b
		t.Fatalf("moved %d versions, want 4", moved)
	}
	if n, err := kr.RootWraps(ctx); err != nil || n != 5 {
		t.Fatalf("root wraps after the rotation %d (%v), want 5", n, err)
	}
	seal(t, kr, "subject/s5", "v")
}
