package keyring

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// The root key wraps every data key version with AES-GCM and a random
// nonce (the local, Shamir and PKCS#11 providers alike), so it is bound
// like a data key: 2^32 wraps. Every wrap is counted — a version made, a
// version moved to a new root key, the probe of a new root key — as uses
// of the newest active version of the root check key (RootCheckKeyID),
// which stands for the root key that wrapped it and itself seals nothing.
// FlushUses writes this node's count with the data keys' counts; a root
// key rotation (RewrapRoot) starts the count again from the wraps it made
// under the new root key. At SealLimit the keyring refuses to make data
// keys (ErrUseLimit) until the root key is rotated.

// UseResetStore is what a Store also implements so that RewrapRoot can
// start the count of wraps under a new root key (the SQL stores do).
type UseResetStore interface {
	// SetDataKeyUses sets the use count of one version to uses and its
	// rewrap count to 0. A version that does not exist is not an error.
	SetDataKeyUses(ctx context.Context, keyID string, version uint32, uses uint64) error
}

// rootUses is the keyring's count of wraps under the root key.
type rootUses struct {
	// wraps counts this node's wraps not yet flushed.
	wraps atomic.Uint64
	mu    sync.Mutex // guards base and loaded
	// base is the Store's count when last read, plus this node's
	// flushes since.
	base   uint64
	loaded time.Time
}

// checkVersion returns the newest active version of the root check key
// and its count, ok false when there is none yet.
func (kr *Keyring) checkVersion(ctx context.Context) (coffer.DataKey, bool, error) {
	rows, err := kr.store.DataKeys(ctx, RootCheckKeyID)
	if err != nil {
		return coffer.DataKey{}, false, fmt.Errorf("keyring: root key uses: %w", err)
	}
	var newest *coffer.DataKey
	for i := range rows {
		if rows[i].State == coffer.KeyActive && (newest == nil || rows[i].Version > newest.Version) {
			newest = &rows[i]
		}
	}
	if newest == nil {
		return coffer.DataKey{}, false, nil
	}
	return *newest, true, nil
}

// admitRootWrap refuses a wrap under a root key at the seal limit. It
// reads the Store's count at most once per CacheTTL.
func (kr *Keyring) admitRootWrap(ctx context.Context) error {
	ru := &kr.rootUses
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if ru.loaded.IsZero() || kr.now().Sub(ru.loaded) >= kr.ttl {
		k, ok, err := kr.checkVersion(ctx)
		if err != nil {
			return err
		}
		if ok {
			ru.base = max(ru.base, k.Uses)
		}
		ru.loaded = kr.now()
	}
	if ru.base+ru.wraps.Load() >= kr.limit {
		return &coffer.Error{Code: coffer.EUNAVAILABLE, RetryAfterSeconds: 3600,
			Message: "the root key reached its use bound: no data key can be made until it is rotated (coffer keys rotate-root)",
			Cause:   fmt.Errorf("%w: the root key", ErrUseLimit)}
	}
	return nil
}

// flushRootWraps adds this node's count of root key wraps to the Store's.
// Without a check key (a keyring never Checked) the count waits.
func (kr *Keyring) flushRootWraps(ctx context.Context, us UseStore) error {
	n := kr.rootUses.wraps.Swap(0)
	if n == 0 {
		return nil
	}
	k, ok, err := kr.checkVersion(ctx)
	if err == nil && ok {
		err = us.AddDataKeyUses(ctx, RootCheckKeyID, k.Version, n, 0)
	}
	if err != nil || !ok {
		kr.rootUses.wraps.Add(n)
		if err != nil {
			return fmt.Errorf("keyring: flush root key wraps: %w", err)
		}
		return nil
	}
	kr.rootUses.mu.Lock()
	kr.rootUses.base += n
	kr.rootUses.mu.Unlock()
	return nil
}

// RootWraps returns how many times the root key wrapped a data key: the
// Store's count, which every node adds to through FlushUses, plus this
// node's count not yet flushed.
func (kr *Keyring) RootWraps(ctx context.Context) (uint64, error) {
	k, _, err := kr.checkVersion(ctx)
	if err != nil {
		return 0, err
	}
	return k.Uses + kr.rootUses.wraps.Load(), nil
}

// restartRootWraps starts the count of wraps under a new root key at
// made, after RewrapRoot moved every version to it.
func (kr *Keyring) restartRootWraps(ctx context.Context, made uint64) error {
	made += kr.rootUses.wraps.Swap(0)
	kr.rootUses.mu.Lock()
	kr.rootUses.base, kr.rootUses.loaded = made, kr.now()
	kr.rootUses.mu.Unlock()
	rs, ok := kr.store.(UseResetStore)
	if !ok {
		return nil
	}
	k, ok, err := kr.checkVersion(ctx)
	if err != nil || !ok {
		return err
	}
	if err := rs.SetDataKeyUses(ctx, RootCheckKeyID, k.Version, made); err != nil {
		return fmt.Errorf("keyring: count wraps under the new root key: %w", err)
	}
	return nil
}
