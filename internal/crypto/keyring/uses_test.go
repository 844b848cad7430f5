package keyring

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// AddDataKeyUses makes memStore a UseStore, like the SQL stores.
func (s *memStore) AddDataKeyUses(_ context.Context, keyID string, version uint32, n, rewrap uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if rewrap > n {
		return errors.New("more rewrap uses than uses")
	}
	if k, ok := s.keys[keyID][version]; ok {
		k.Uses += n
		k.RewrapUses += rewrap
		s.keys[keyID][version] = k
	}
	return nil
}

func (s *memStore) uses(keyID string, v uint32) uint64 { return s.row(keyID, v).Uses }

func (s *memStore) rewrapUses(keyID string, v uint32) uint64 { return s.row(keyID, v).RewrapUses }

// uses returns how many values were sealed under each version of keyID,
// by Seal and Reseal alike: the Store's count, which every node adds to
// through FlushUses, plus this node's count not yet flushed. Other nodes' counts arrive with their next
// flush. A flush running at the same time may be counted twice, never
// missed, so the total errs on the side of rotating early.
func (kr *Keyring) uses(ctx context.Context, keyID string) (map[uint32]uint64, error) {
	out := make(map[uint32]uint64)
	kr.mu.RLock()
	if e := kr.keys[keyID]; e != nil {
		for _, v := range e.versions {
			if n := v.seals.Load() + v.reseals.Load(); n > 0 {
				out[v.n] += n
			}
		}
	}
	kr.mu.RUnlock()
	kr.usesMu.Lock()
	for k, n := range kr.unflushed {
		if k.keyID == keyID {
			out[k.version] += n.total()
		}
	}
	kr.usesMu.Unlock()
	rows, err := kr.store.DataKeys(ctx, keyID)
	if err != nil {
		return nil, fmt.Errorf("keyring: uses of %s: %w", keyID, err)
	}
	for _, r := range rows {
		out[r.Version] += r.Uses
	}
	return out, nil
}

func wantUses(t *testing.T, kr *Keyring, keyID string, want map[uint32]uint64) {
	t.Helper()
	got, err := kr.uses(ctx, keyID)
	if err != nil {
		t.Fatal(err)
	}
	for v, n := range want {
		if got[v] != n {
			t.Errorf("%s uses = %v, want %v", keyID, got, want)
			return
		}
	}
}

// TestSealsCountedAndFlushed: every Seal counts once for its version on
// the node that made it until FlushUses adds it to the store, which sums
// every node's counts; opening, MACs and derived keys count nothing.
func TestSealsCountedAndFlushed(t *testing.T) {
	f := newFixture(t)
	a, b := f.node(), f.node()
	var env []byte
	for range 5 {
		env = seal(t, a, "collection/c", "x")
	}
	mustOpen(t, a, "collection/c", env, "x")
	if _, _, err := a.MAC(ctx, "collection/c", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Key(ctx, "collection/c"); err != nil {
		t.Fatal(err)
	}
	if n := f.s.uses("collection/c", 1); n != 0 {
		t.Fatalf("stored before a flush: %d", n)
	}
	wantUses(t, a, "collection/c", map[uint32]uint64{1: 5}) // this node's unflushed count
	wantUses(t, b, "collection/c", map[uint32]uint64{1: 0}) // not yet flushed
	if err := a.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.s.uses("collection/c", 1); n != 5 {
		t.Fatalf("stored after a flush: %d, want 5", n)
	}
	wantUses(t, a, "collection/c", map[uint32]uint64{1: 5}) // not counted twice
	for range 3 {
		seal(t, b, "collection/c", "y")
	}
	wantUses(t, b, "collection/c", map[uint32]uint64{1: 8}) // stored 5 + its own 3
	if err := b.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.FlushUses(ctx); err != nil { // nothing new: adds nothing
		t.Fatal(err)
	}
	if n := f.s.uses("collection/c", 1); n != 8 {
		t.Fatalf("stored after both nodes flushed: %d, want 8", n)
	}
	// A new version starts from zero; the old one keeps its count.
	if _, err := a.Rotate(ctx, "collection/c"); err != nil {
		t.Fatal(err)
	}
	seal(t, a, "collection/c", "z")
	seal(t, a, "collection/c", "z")
	if err := a.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if v1, v2 := f.s.uses("collection/c", 1), f.s.uses("collection/c", 2); v1 != 8 || v2 != 2 {
		t.Fatalf("after rotation: v1 %d, v2 %d; want 8 and 2", v1, v2)
	}
}

// TestSealCountsSurviveTheCache: counts of versions that leave the cache
// (reload after CacheTTL, eviction, Close, destruction) are still flushed.
func TestSealCountsSurviveTheCache(t *testing.T) {
	f := newFixture(t)
	kr := New(f.p, f.s, Options{Now: f.clock.Now, CacheTTL: 30 * time.Second, MaxKeys: 2})
	seal(t, kr, "a", "1")
	f.clock.Advance(31 * time.Second) // reload keeps the unchanged version
	seal(t, kr, "a", "2")
	seal(t, kr, "b", "1")
	seal(t, kr, "c", "1") // over MaxKeys: another id is evicted
	seal(t, kr, "d", "1")
	seal(t, kr, "e", "1")
	if err := kr.Destroy(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	seal(t, kr, "b", "2")
	if err := kr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := kr.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]uint64{"a": 2, "b": 2, "c": 1, "d": 1, "e": 1} {
		if n := f.s.uses(id, 1); n != want {
			t.Errorf("%s: %d uses stored, want %d", id, n, want)
		}
	}
}

// TestFailedFlushKeepsCounts: a flush the store refuses loses nothing and
// the next one writes each count once.
func TestFailedFlushKeepsCounts(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	for range 4 {
		seal(t, kr, "a", "x")
	}
	seal(t, kr, "b", "x")
	boom := errors.New("database down")
	f.s.mu.Lock()
	f.s.fail = boom
	f.s.mu.Unlock()
	if err := kr.FlushUses(ctx); !errors.Is(err, boom) {
		t.Fatalf("flush: %v, want the store's error", err)
	}
	f.s.mu.Lock()
	f.s.fail = nil
	f.s.mu.Unlock()
	seal(t, kr, "a", "x")
	if err := kr.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if a, b := f.s.uses("a", 1), f.s.uses("b", 1); a != 5 || b != 1 {
		t.Fatalf("after retry: a %d, b %d; want 5 and 1", a, b)
	}
}

// plainStore hides memStore's AddDataKeyUses: a Store that keeps no counts.
type plainStore struct{ Store }

func TestFlushWithoutUseStore(t *testing.T) {
	f := newFixture(t)
	kr := New(f.p, plainStore{f.s}, Options{Now: f.clock.Now})
	seal(t, kr, "a", "x")
	if err := kr.FlushUses(ctx); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("flush: %v, want ErrUnsupported", err)
	}
	wantUses(t, kr, "a", map[uint32]uint64{1: 1}) // still counted here
}

// TestResealsCountedApart: a Reseal counts as a use like a Seal and also
// as a rewrap use; a Seal never does. Both reach the store in one flush,
// survive the cache, and a failed flush keeps both.
func TestResealsCountedApart(t *testing.T) {
	f := newFixture(t)
	kr := New(f.p, f.s, Options{Now: f.clock.Now, CacheTTL: 30 * time.Second})
	env := seal(t, kr, "collection/c", "x")
	if _, err := kr.Rotate(ctx, "collection/c"); err != nil {
		t.Fatal(err)
	}
	pt, err := kr.Open(ctx, "collection/c", env, envelope.AAD("collection/c", "rec", "field"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		env, err = kr.Reseal(ctx, "collection/c", pt, envelope.AAD("collection/c", "rec", "field"))
		if err != nil {
			t.Fatal(err)
		}
	}
	if v := version(t, env); v != 2 {
		t.Fatalf("Reseal used version %d, want the newest, 2", v)
	}
	mustOpen(t, kr, "collection/c", env, "x")
	seal(t, kr, "collection/c", "y")
	wantUses(t, kr, "collection/c", map[uint32]uint64{1: 1, 2: 4}) // reseals are uses
	f.clock.Advance(31 * time.Second)                              // the reload keeps the counts
	seal(t, kr, "collection/c", "y")

	boom := errors.New("database down")
	f.s.mu.Lock()
	f.s.fail = boom
	f.s.mu.Unlock()
	if err := kr.FlushUses(ctx); !errors.Is(err, boom) {
		t.Fatalf("flush: %v, want the store's error", err)
	}
	f.s.mu.Lock()
	f.s.fail = nil
	f.s.mu.Unlock()
	if _, err := kr.Reseal(ctx, "collection/c", pt, nil); err != nil {
		t.Fatal(err)
	}
	if err := kr.Close(); err != nil { // the counts move aside, still flushed
		t.Fatal(err)
	}
	if err := kr.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ v, uses, rewrap uint64 }{{1, 1, 0}, {2, 6, 4}} {
		v := uint32(c.v)
		if u, r := f.s.uses("collection/c", v), f.s.rewrapUses("collection/c", v); u != c.uses || r != c.rewrap {
			t.Errorf("version %d: %d uses, %d rewrap uses; want %d and %d", v, u, r, c.uses, c.rewrap)
		}
	}
}

// TestConcurrentSealsAllCounted: seals racing with flushes, reloads and
// evictions on two nodes are each counted exactly once.
func TestConcurrentSealsAllCounted(t *testing.T) {
	f := newFixture(t)
	nodes := []*Keyring{f.node(), f.node()}
	const workers, each = 4, 300
	var wg sync.WaitGroup
	done := make(chan struct{})
	for _, kr := range nodes {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := kr.FlushUses(ctx); err != nil {
					t.Error(err)
				}
				_ = kr.Close() // drops the cache: counts move aside
			}
		})
	}
	var sealers sync.WaitGroup
	for i := range workers {
		kr := nodes[i%len(nodes)]
		sealFn := kr.Seal
		if i%4 == 3 {
			sealFn = kr.Reseal // like the rewrap, on one of them
		}
		sealers.Go(func() {
			for range each {
				if _, err := sealFn(ctx, "collection/c", []byte("x"), nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	sealers.Wait()
	close(done)
	wg.Wait()
	for _, kr := range nodes {
		if err := kr.FlushUses(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.s.uses("collection/c", 1); n != workers*each {
		t.Fatalf("%d uses stored, want %d", n, workers*each)
	}
	if n := f.s.rewrapUses("collection/c", 1); n != workers/4*each {
		t.Fatalf("%d rewrap uses stored, want %d", n, workers/4*each)
	}
}

// TestSealCountingAllocatesNothing: counting adds no allocation to Seal.
func TestSealCountingAllocatesNothing(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	seal(t, kr, "collection/c", "warm")
	pt, aad := []byte("value"), []byte("aad")
	per := testing.AllocsPerRun(200, func() {
		if _, err := kr.Seal(ctx, "collection/c", pt, aad); err != nil {
			t.Fatal(err)
		}
	})
	// The envelope itself and the closure are Seal's; counting is an
	// atomic add on the cached version.
	base := testing.AllocsPerRun(200, func() {
		_ = kr.withCurrent(ctx, "collection/c", func(v *keyVersion) error {
			_, err := v.aead.Seal(kr.rand, pt, aad)
			return err
		})
	})
	if per > base {
		t.Fatalf("Seal allocates %.0f times, sealing alone %.0f", per, base)
	}
	if re := testing.AllocsPerRun(200, func() {
		if _, err := kr.Reseal(ctx, "collection/c", pt, aad); err != nil {
			t.Fatal(err)
		}
	}); re > base {
		t.Fatalf("Reseal allocates %.0f times, sealing alone %.0f", re, base)
	}
}
