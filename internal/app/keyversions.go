package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/token"
)

// KeyVersionChange is what a retire, unretire or destroy of one key
// version did.
type KeyVersionChange = httpapi.KeyVersionChange

// DefaultRetireAfter is how long a key version must have had a newer one
// before it may be retired: the keyring's cache time, during which a node
// that has not yet seen the rotation may still seal new values under the
// old version, and a margin for a value sealed then to reach the store.
// It holds on SQLite too: `coffer keys rotate` may run offline beside a
// serving node.
const DefaultRetireAfter = keyring.DefaultCacheTTL + 15*time.Second

// retirable reports whether keyID is a key whose old versions an operator
// may retire and destroy: the keys that seal stored values and nothing
// else — collection/NAME and subject/ID (record values, moved forward by
// the rewrap) and tokens/TYPE (token values). Never blind index keys, the
// token index, order, FPE and deterministic keys (their versions find or
// make tokens), the audit keys (kept for good), the mask and root check
// keys, nor transit keys (they have min_decryption_version).
func retirable(keyID string) bool {
	for _, p := range []string{"collection/", "subject/"} {
		if name, ok := strings.CutPrefix(keyID, p); ok {
			return name != ""
		}
	}
	return token.ValueKey(keyID)
}

// errNotRetirable is the answer for a key id whose versions are not ended
// this way.
func errNotRetirable(what string) error {
	return coffer.Errorf(coffer.EINVALID,
		"only the versions of collection/NAME, subject/ID and tokens/TYPE keys can be %s (index, FPE, deterministic, audit, mask and transit keys cannot)", what)
}

// keyVersionRows checks keyID and version and returns the key's stored
// versions, version's row and the current (newest active) version.
func keyVersionRows(ctx context.Context, c *components, keyID string, version uint32, what string) ([]coffer.DataKey, coffer.DataKey, uint32, error) {
	if !retirable(keyID) {
		return nil, coffer.DataKey{}, 0, errNotRetirable(what)
	}
	if version == 0 {
		return nil, coffer.DataKey{}, 0, coffer.Errorf(coffer.EINVALID, "version must be a key version number, 1 or more")
	}
	rows, err := c.db.DataKeys(ctx, keyID)
	if err != nil {
		return nil, coffer.DataKey{}, 0, err
	}
	if len(rows) == 0 {
		return nil, coffer.DataKey{}, 0, coffer.Errorf(coffer.ENOTFOUND, "no such key")
	}
	var (
		row     coffer.DataKey
		found   bool
		current uint32
	)
	for _, r := range rows {
		if r.Version == version {
			row, found = r, true
		}
		if r.State == coffer.KeyActive {
			current = max(current, r.Version)
		}
	}
	if coffer.Erased(rows) {
		return nil, coffer.DataKey{}, 0, coffer.Errorf(coffer.ECONFLICT, "the key was destroyed (its subject erased)")
	}
	if !found {
		return nil, coffer.DataKey{}, 0, coffer.Errorf(coffer.ENOTFOUND, "the key has no version %d", version)
	}
	return rows, row, current, nil
}

// sealedUnder refuses (409) when any stored value is sealed under version
// of keyID.
func sealedUnder(ctx context.Context, c *components, keyID string, version uint32, hint string) error {
	n, err := c.db.CountSealedUnder(ctx, keyID, version)
	if err != nil {
		return err
	}
	if n > 0 {
		return coffer.Errorf(coffer.ECONFLICT, "%d stored values are still sealed under version %d: %s", n, version, hint)
	}
	return nil
}

// retireKeyVersion retires version of keyID once it is safe: it is not the
// version that encrypts, its successor is older than wait (no node can
// still seal under it) and no stored value is sealed under it. It checks
// again after retiring and undoes the retirement if a value slipped in.
func retireKeyVersion(ctx context.Context, c *components, keyID string, version uint32, wait time.Duration) (KeyVersionChange, error) {
	out := KeyVersionChange{KeyID: keyID, Version: version}
	rows, row, current, err := keyVersionRows(ctx, c, keyID, version, "retired")
	if err != nil {
		return out, err
	}
	switch {
	case row.State == coffer.KeyDestroyed:
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d was destroyed; that is final", version)
	case row.State == coffer.KeyRetired:
		out.State = coffer.KeyRetired
		return out, nil
	case version >= current:
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d is the one that encrypts; rotate the key first, let the rewrap move its values, then retire it", version)
	}
	// The version made right after this one: until every node's key cache
	// knows it, a node may still seal new values under this one.
	next := coffer.DataKey{Version: math.MaxUint32}
	for _, r := range rows {
		if r.Version > version && r.Version < next.Version {
			next = r
		}
	}
	if wait > 0 {
		allowed := next.Created.Add(wait)
		if now := c.opts.Now(); now.Before(allowed) {
			return out, &coffer.Error{Code: coffer.ECONFLICT, RetryAfterSeconds: int(allowed.Sub(now).Seconds()) + 1,
				Message: fmt.Sprintf("version %d was made less than %s ago, and a node whose key cache predates it may still seal under version %d: retry at %s",
					next.Version, wait, version, allowed.UTC().Format(time.RFC3339))}
		}
	}
	hint := "let the rewrap move them (it runs after a rotation and every minute on a serving node) and retry"
	if strings.HasPrefix(keyID, "tokens/") {
		hint = "token values are not rewrapped; the version must stay until those tokens are deleted or expire"
	}
	if err := sealedUnder(ctx, c, keyID, version, hint); err != nil {
		return out, err
	}
	err = c.keys.Retire(ctx, keyID, version)
	switch {
	case errors.Is(err, keyring.ErrCurrentVersion):
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d is the one that encrypts; rotate the key first", version)
	case errors.Is(err, keyring.ErrKeyDestroyed), errors.Is(err, keyring.ErrVersionDestroyed):
		return out, coffer.Errorf(coffer.ECONFLICT, "the key or version was destroyed meanwhile")
	case errors.Is(err, keyring.ErrKeyNotFound):
		return out, coffer.Errorf(coffer.ENOTFOUND, "the key has no version %d", version)
	case err != nil:
		return out, err
	}
	// A value written between the count and the retirement would no
	// longer open: look again, and bring the version back if one did.
	if err := sealedUnder(ctx, c, keyID, version, hint); err != nil {
		if uerr := c.keys.Unretire(ctx, keyID, version); uerr != nil {
			return out, fmt.Errorf("a value was sealed under version %d while it was retired, and unretiring it failed (run coffer keys unretire): %w", version, uerr)
		}
		return out, err
	}
	out.State = coffer.KeyRetired
	return out, nil
}

// unretireKeyVersion makes a retired version of keyID decrypt again.
func unretireKeyVersion(ctx context.Context, c *components, keyID string, version uint32) (KeyVersionChange, error) {
	out := KeyVersionChange{KeyID: keyID, Version: version}
	_, row, _, err := keyVersionRows(ctx, c, keyID, version, "unretired")
	if err != nil {
		return out, err
	}
	if row.State == coffer.KeyDestroyed {
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d was destroyed; that is final", version)
	}
	err = c.keys.Unretire(ctx, keyID, version)
	if errors.Is(err, keyring.ErrVersionDestroyed) || errors.Is(err, keyring.ErrKeyDestroyed) {
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d was destroyed; that is final", version)
	}
	if err != nil {
		return out, err
	}
	out.State = coffer.KeyActive
	return out, nil
}

// destroyKeyVersion destroys a retired version of keyID, for good, once no
// stored value is sealed under it.
func destroyKeyVersion(ctx context.Context, c *components, keyID string, version uint32) (KeyVersionChange, error) {
	out := KeyVersionChange{KeyID: keyID, Version: version}
	_, row, _, err := keyVersionRows(ctx, c, keyID, version, "destroyed")
	if err != nil {
		return out, err
	}
	switch row.State {
	case coffer.KeyDestroyed:
		out.State = coffer.KeyDestroyed
		return out, nil
	case coffer.KeyActive:
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d is active: only a retired version can be destroyed; retire it first", version)
	}
	if err := sealedUnder(ctx, c, keyID, version,
		"they do not open while it is retired; unretire it, let the rewrap move them, then retire and destroy it"); err != nil {
		return out, err
	}
	err = c.keys.DestroyVersion(ctx, keyID, version)
	switch {
	case errors.Is(err, keyring.ErrNotRetired), errors.Is(err, keyring.ErrCurrentVersion):
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d is no longer retired; retire it first", version)
	case errors.Is(err, keyring.ErrKeyDestroyed):
		return out, coffer.Errorf(coffer.ECONFLICT, "the key was destroyed meanwhile")
	case err != nil:
		return out, err
	}
	out.State = coffer.KeyDestroyed
	return out, nil
}

// retireWait is how long c's deployment waits before a version with a
// newer one may be retired.
func retireWait(c *components) time.Duration {
	switch w := c.opts.RetireAfter; {
	case w < 0:
		return 0
	case w == 0:
		return DefaultRetireAfter
	default:
		return w
	}
}

// RetireKeyVersion retires one version of a collection, subject or token
// key offline, against the store (see retireKeyVersion for when it
// refuses). Running nodes stop decrypting with it within the keyring's
// cache time.
func RetireKeyVersion(ctx context.Context, cfg *config.Config, keyID string, version uint32) (KeyVersionChange, error) {
	return offlineKeyVersion(ctx, cfg, "keys.retire", keyID, version, func(c *components) (KeyVersionChange, error) {
		return retireKeyVersion(ctx, c, keyID, version, retireWait(c))
	})
}

// UnretireKeyVersion brings a retired version back offline, to undo a
// retirement made too early. Running nodes decrypt with it again within
// the keyring's cache time.
func UnretireKeyVersion(ctx context.Context, cfg *config.Config, keyID string, version uint32) (KeyVersionChange, error) {
	return offlineKeyVersion(ctx, cfg, "keys.unretire", keyID, version, func(c *components) (KeyVersionChange, error) {
		return unretireKeyVersion(ctx, c, keyID, version)
	})
}

// DestroyKeyVersion destroys one retired version offline, for good.
func DestroyKeyVersion(ctx context.Context, cfg *config.Config, keyID string, version uint32) (KeyVersionChange, error) {
	return offlineKeyVersion(ctx, cfg, "keys.destroy", keyID, version, func(c *components) (KeyVersionChange, error) {
		return destroyKeyVersion(ctx, c, keyID, version)
	})
}

// offlineKeyVersion runs fn, a change to one version of keyID, on cfg's
// store, audited as action on keys/KEY_ID/versions/N (as the API records
// it) on the offline chain.
func offlineKeyVersion(ctx context.Context, cfg *config.Config, action, keyID string, version uint32, fn func(*components) (KeyVersionChange, error)) (KeyVersionChange, error) {
	c, err := open(ctx, cfg, Options{Offline: true})
	if err != nil {
		return KeyVersionChange{}, err
	}
	defer c.Close()
	var out KeyVersionChange
	err = auditedOffline(ctx, c, action, coffer.SystemKeyVersionTarget(keyID, version), func() (err error) {
		out, err = fn(c)
		return err
	})
	return out, err
}

// RetireKey, UnretireKey and DestroyKey make keyAdmin an
// httpapi.KeyVersionAdmin.

func (a *keyAdmin) RetireKey(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	out, err := retireKeyVersion(ctx, a.c, keyID, version, retireWait(a.c))
	if err == nil {
		a.log.Info("key version retired", "key_id", keyID, "version", version)
	}
	return out, err
}

func (a *keyAdmin) UnretireKey(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	out, err := unretireKeyVersion(ctx, a.c, keyID, version)
	if err == nil {
		a.log.Info("key version unretired", "key_id", keyID, "version", version)
	}
	return out, err
}

func (a *keyAdmin) DestroyKey(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	out, err := destroyKeyVersion(ctx, a.c, keyID, version)
	if err == nil {
		a.log.Info("key version destroyed", "key_id", keyID, "version", version)
	}
	return out, err
}
