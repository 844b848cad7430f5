package keyring

import (
	"context"
	"errors"
	"fmt"
)

// UseStore is what FlushUses needs of the Store besides Store: a way to add
// this node's count of values sealed under a version to the count every
// node shares. The SQL stores implement it; it must be safe for concurrent
// use.
type UseStore interface {
	// AddDataKeyUses adds uses to the count of values sealed under
	// version of keyID (coffer.DataKey.Uses) and rewrapUses, the part of
	// them that Reseal made, to its rewrap count
	// (coffer.DataKey.RewrapUses), both in one atomic step, so that
	// several nodes may add at once and the rewrap count never exceeds
	// the count, and durably before it returns. rewrapUses is at most
	// uses. A version that does not exist is not an error: there is
	// nothing left to count.
	AddDataKeyUses(ctx context.Context, keyID string, version uint32, uses, rewrapUses uint64) error
}

// useKey names one version for counting.
type useKey struct {
	keyID   string
	version uint32
}

// useCount is an unflushed count of one version: Seals and Reseals apart.
type useCount struct {
	seals, reseals uint64
}

func (c useCount) add(o useCount) useCount {
	return useCount{c.seals + o.seals, c.reseals + o.reseals}
}

// total is every seal of the count, the Store's uses.
func (c useCount) total() uint64 { return c.seals + c.reseals }

// swapCounts takes v's unflushed counts and sets them to zero. Each
// counter is swapped on its own: a Seal or Reseal racing with it lands in
// this count or the next one, never both, never neither.
func swapCounts(v *keyVersion) useCount {
	return useCount{seals: v.seals.Swap(0), reseals: v.reseals.Swap(0)}
}

// keepSeals moves the unflushed counts of v, a version of keyID leaving
// the cache, to kr.unflushed. The caller holds mu's write lock, so no Seal
// adds to v meanwhile and none will afterwards.
func (kr *Keyring) keepSeals(keyID string, v *keyVersion) {
	n := swapCounts(v)
	if n.total() == 0 {
		return
	}
	kr.usesMu.Lock()
	k := useKey{keyID, v.n}
	kr.unflushed[k] = kr.unflushed[k].add(n)
	kr.usesMu.Unlock()
}

// takeSeals returns every unflushed count and sets them to zero. Each Seal
// is in exactly one call's result: the cached counters are swapped, and a
// version that leaves the cache meanwhile hands its count to unflushed,
// which is taken after them.
func (kr *Keyring) takeSeals() map[useKey]useCount {
	out := make(map[useKey]useCount)
	kr.mu.RLock()
	for id, e := range kr.keys {
		for _, v := range e.versions {
			if n := swapCounts(v); n.total() > 0 {
				k := useKey{id, v.n}
				out[k] = out[k].add(n)
				// On their way to the Store: still this version's.
				v.base.Add(n.total())
			}
		}
	}
	kr.mu.RUnlock()
	kr.usesMu.Lock()
	for k, n := range kr.unflushed {
		out[k] = out[k].add(n)
	}
	clear(kr.unflushed)
	kr.usesMu.Unlock()
	return out
}

// putBack returns counts that could not be flushed, for the next call.
func (kr *Keyring) putBack(counts map[useKey]useCount) {
	kr.usesMu.Lock()
	defer kr.usesMu.Unlock()
	for k, n := range counts {
		kr.unflushed[k] = kr.unflushed[k].add(n)
	}
}

// FlushUses adds this node's count of Seals and Reseals per version, made
// since the last flush, to the Store's (coffer.DataKey.Uses), which every
// node adds to, and the count of Reseals alone to the Store's rewrap count
// (coffer.DataKey.RewrapUses), in the same step. Call it every few seconds
// and once at shutdown (after Close is fine). Counts that cannot be
// written are kept for the next call, and the first error is returned. A
// Store that is no UseStore keeps no counts: FlushUses then returns an
// error wrapping errors.ErrUnsupported and keeps counting in memory.
func (kr *Keyring) FlushUses(ctx context.Context) error {
	us, ok := kr.store.(UseStore)
	if !ok {
		return fmt.Errorf("keyring: flush uses: the store keeps no use counts: %w", errors.ErrUnsupported)
	}
	counts := kr.takeSeals()
	for k, n := range counts {
		if err := us.AddDataKeyUses(ctx, k.keyID, k.version, n.total(), n.reseals); err != nil {
			kr.putBack(counts)
			return fmt.Errorf("keyring: flush uses of %s version %d: %w", k.keyID, k.version, err)
		}
		delete(counts, k)
	}
	return kr.flushRootWraps(ctx, us)
}
