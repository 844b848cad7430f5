package keyring

import (
	"context"
	"fmt"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Unretire makes retired version n of keyID decrypt again — here at once,
// on other nodes within CacheTTL — to undo a Retire made too early (a value
// still sealed under the version). It never makes n the version that
// encrypts unless it is the highest active one. Unretiring an active
// version does nothing; a destroyed version cannot come back
// (ErrVersionDestroyed). The Store must implement VersionStore.
func (kr *Keyring) Unretire(ctx context.Context, keyID string, n uint32) error {
	return kr.endVersion(ctx, keyID, n, "unretire", func(vs VersionStore, v *keyVersion, e *entry) (bool, error) {
		switch v.state {
		case coffer.KeyActive:
			return false, nil
		case coffer.KeyDestroyed:
			return false, fmt.Errorf("%w: %s version %d", ErrVersionDestroyed, keyID, n)
		}
		done, err := vs.SwapDataKeyState(ctx, keyID, n, coffer.KeyRetired, coffer.KeyActive)
		if err == nil && !done {
			err = fmt.Errorf("keyring: unretire %s version %d: its state changed meanwhile; try again", keyID, n)
		}
		return err == nil, err
	})
}

// DestroyVersion crypto-shreds one retired version n of keyID: its wrapped
// bytes are erased in the Store and it is marked destroyed, for good.
// Afterwards Open of a value sealed under it returns ErrVersionDestroyed —
// here at once, on other nodes within CacheTTL (until then they refuse it
// as retired) — while the key id's other versions work as before. Only a
// retired version can be destroyed (ErrNotRetired; the version that
// encrypts is ErrCurrentVersion); destroying a destroyed version does
// nothing. A Permanent key id is refused (ErrKeyPermanent). The Store must
// implement VersionStore. Check first that no stored value is sealed
// under n: nothing can open it afterwards.
func (kr *Keyring) DestroyVersion(ctx context.Context, keyID string, n uint32) error {
	if Permanent(keyID) {
		return fmt.Errorf("%w: %s", ErrKeyPermanent, keyID)
	}
	return kr.endVersion(ctx, keyID, n, "destroy", func(vs VersionStore, v *keyVersion, e *entry) (bool, error) {
		switch {
		case v.state == coffer.KeyDestroyed:
			return false, nil
		case v == e.current:
			return false, fmt.Errorf("%w: %s version %d", ErrCurrentVersion, keyID, n)
		case v.state != coffer.KeyRetired:
			return false, fmt.Errorf("%w: %s version %d", ErrNotRetired, keyID, n)
		}
		done, err := vs.DestroyRetiredDataKey(ctx, keyID, n)
		if err == nil && !done {
			err = fmt.Errorf("%w: %s version %d (its state changed meanwhile)", ErrNotRetired, keyID, n)
		}
		return err == nil, err
	})
}

// endVersion loads keyID afresh under its stripe, runs change on version n
// (it reports whether it changed the Store) and reloads the key id into
// the cache, so this node sees the new state at once.
func (kr *Keyring) endVersion(ctx context.Context, keyID string, n uint32, what string,
	change func(VersionStore, *keyVersion, *entry) (bool, error)) error {
	vs, ok := kr.store.(VersionStore)
	if !ok {
		return fmt.Errorf("keyring: %s %s version %d: the store cannot change one version", what, keyID, n)
	}
	e, v, unlock, err := kr.lockVersion(ctx, keyID, n)
	if err != nil {
		return err
	}
	defer unlock()
	changed, err := change(vs, v, e)
	if err != nil {
		kr.evict(keyID) // whatever the Store holds now, reload it on next use
		return fmt.Errorf("keyring: %s %s version %d: %w", what, keyID, n, err)
	}
	if !changed {
		return nil
	}
	return kr.reload(ctx, keyID, e)
}
