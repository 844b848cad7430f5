package keyadmin

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// KeyVersionChange is what a retire, unretire or destroy of one key
// version did.
type KeyVersionChange struct {
	KeyID   string `json:"key_id"`
	Version uint32 `json:"version"`
	// State is the version's state now: "retired", "active" or "destroyed".
	State string `json:"state"`
}

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
func retirable(keyID string) bool { return coffer.ParseKeyID(keyID).Retirable() }

// errNotRetirable is the answer for a key id whose versions are not ended
// this way.
func errNotRetirable(what string) error {
	return coffer.Errorf(coffer.EINVALID,
		"only the versions of collection/NAME, subject/ID and tokens/TYPE keys can be %s (index, FPE, deterministic, audit, mask and transit keys cannot)", what)
}

// keyVersionRows checks keyID and version and returns the key's stored
// versions, version's row and the current (newest active) version.
func (a *Admin) keyVersionRows(ctx context.Context, keyID string, version uint32, what string) ([]coffer.DataKey, coffer.DataKey, uint32, error) {
	if !retirable(keyID) {
		return nil, coffer.DataKey{}, 0, errNotRetirable(what)
	}
	if version == 0 {
		return nil, coffer.DataKey{}, 0, coffer.Errorf(coffer.EINVALID, "version must be a key version number, 1 or more")
	}
	rows, err := a.c.Store.DataKeys(ctx, keyID)
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
func (a *Admin) sealedUnder(ctx context.Context, keyID string, version uint32, hint string) error {
	n, err := a.c.Store.CountSealedUnder(ctx, keyID, version)
	if err != nil {
		return err
	}
	if n > 0 {
		return coffer.Errorf(coffer.ECONFLICT, "%d stored values are still sealed under version %d: %s", n, version, hint)
	}
	return nil
}

// Retire retires version of keyID once it is safe: it is not the
// version that encrypts, its successor is older than wait (no node can
// still seal under it) and no stored value is sealed under it. It checks
// again after retiring and undoes the retirement if a value slipped in.
func (a *Admin) Retire(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	out := KeyVersionChange{KeyID: keyID, Version: version}
	rows, row, current, err := a.keyVersionRows(ctx, keyID, version, "retired")
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
	if wait := a.retireWait(); wait > 0 {
		allowed := next.Created.Add(wait)
		if now := a.c.Now(); now.Before(allowed) {
			return out, &coffer.Error{Code: coffer.ECONFLICT, RetryAfterSeconds: int(allowed.Sub(now).Seconds()) + 1,
				Message: fmt.Sprintf("version %d was made less than %s ago, and a node whose key cache predates it may still seal under version %d: retry at %s",
					next.Version, wait, version, allowed.UTC().Format(time.RFC3339))}
		}
	}
	hint := "let the rewrap move them (it runs after a rotation and every minute on a serving node) and retry"
	if coffer.ParseKeyID(keyID).Kind == coffer.KeyTokenValue {
		hint = "token values are not rewrapped; the version must stay until those tokens are deleted or expire"
	}
	if err := a.sealedUnder(ctx, keyID, version, hint); err != nil {
		return out, err
	}
	err = a.c.Keys.Retire(ctx, keyID, version)
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
	if err := a.sealedUnder(ctx, keyID, version, hint); err != nil {
		if uerr := a.c.Keys.Unretire(ctx, keyID, version); uerr != nil {
			return out, fmt.Errorf("a value was sealed under version %d while it was retired, and unretiring it failed (run coffer keys unretire): %w", version, uerr)
		}
		return out, err
	}
	out.State = coffer.KeyRetired
	return out, nil
}

// Unretire makes a retired version of keyID decrypt again.
func (a *Admin) Unretire(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	out := KeyVersionChange{KeyID: keyID, Version: version}
	_, row, _, err := a.keyVersionRows(ctx, keyID, version, "unretired")
	if err != nil {
		return out, err
	}
	if row.State == coffer.KeyDestroyed {
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d was destroyed; that is final", version)
	}
	err = a.c.Keys.Unretire(ctx, keyID, version)
	if errors.Is(err, keyring.ErrVersionDestroyed) || errors.Is(err, keyring.ErrKeyDestroyed) {
		return out, coffer.Errorf(coffer.ECONFLICT, "version %d was destroyed; that is final", version)
	}
	if err != nil {
		return out, err
	}
	out.State = coffer.KeyActive
	return out, nil
}

// Destroy destroys a retired version of keyID, for good, once no
// stored value is sealed under it.
func (a *Admin) Destroy(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	out := KeyVersionChange{KeyID: keyID, Version: version}
	_, row, _, err := a.keyVersionRows(ctx, keyID, version, "destroyed")
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
	if err := a.sealedUnder(ctx, keyID, version,
		"they do not open while it is retired; unretire it, let the rewrap move them, then retire and destroy it"); err != nil {
		return out, err
	}
	err = a.c.Keys.DestroyVersion(ctx, keyID, version)
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

// retireWait is how long a version with a newer one must wait before it
// may be retired.
func (a *Admin) retireWait() time.Duration {
	switch w := a.c.RetireAfter; {
	case w < 0:
		return 0
	case w == 0:
		return DefaultRetireAfter
	default:
		return w
	}
}

// RetireKey, UnretireKey and DestroyKey end (or bring back) one old version
// of a key that seals stored values, for an API caller with admin on
// system/keys/KEY_ID. Errors are *coffer.Error for what the caller got
// wrong (EINVALID for a key id whose versions are not ended this way or a
// version 0, ENOTFOUND for an unknown key or version, ECONFLICT when
// refusing would keep a stored value readable or the state forbids it);
// anything else is internal.
func (a *Admin) RetireKey(ctx context.Context, c Caller, keyID string, version uint32) (KeyVersionChange, error) {
	return a.versionCall(ctx, c, "retire", "retired", keyID, version, a.Retire)
}

// UnretireKey makes a retired version decrypt again (see RetireKey).
func (a *Admin) UnretireKey(ctx context.Context, c Caller, keyID string, version uint32) (KeyVersionChange, error) {
	return a.versionCall(ctx, c, "unretire", "unretired", keyID, version, a.Unretire)
}

// DestroyKey erases a retired version for good (see RetireKey).
func (a *Admin) DestroyKey(ctx context.Context, c Caller, keyID string, version uint32) (KeyVersionChange, error) {
	return a.versionCall(ctx, c, "destroy", "destroyed", keyID, version, a.Destroy)
}

type versionOp func(context.Context, string, uint32) (KeyVersionChange, error)

// versionCall admits the API's call to op on one version of keyID, runs
// it, logs it and notes it for the audit log.
func (a *Admin) versionCall(ctx context.Context, c Caller, op, done, keyID string, version uint32, do versionOp) (KeyVersionChange, error) {
	if version == 0 {
		return KeyVersionChange{}, coffer.Errorf(coffer.EINVALID, "version must be a key version number, 1 or more")
	}
	if err := a.admit(c, "keys."+op, keyID, version); err != nil {
		return KeyVersionChange{}, err
	}
	out, err := do(ctx, keyID, version)
	if err != nil {
		return out, err
	}
	a.c.Logger.Info("key version "+done, "key_id", keyID, "version", version)
	c.Note.Count = 1
	c.Note.Touch(coffer.SystemKeyVersionTarget(keyID, version))
	return out, nil
}

// RetireOffline retires one version of a collection, subject or token key
// against the store, without a server (see Retire for when it refuses).
// Running nodes stop decrypting with it within the keyring's cache time.
func (a *Admin) RetireOffline(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	return a.versionOffline(ctx, "keys.retire", keyID, version, a.Retire)
}

// UnretireOffline brings a retired version back without a server, to undo
// a retirement made too early. Running nodes decrypt with it again within
// the keyring's cache time.
func (a *Admin) UnretireOffline(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	return a.versionOffline(ctx, "keys.unretire", keyID, version, a.Unretire)
}

// DestroyOffline destroys one retired version without a server, for good.
func (a *Admin) DestroyOffline(ctx context.Context, keyID string, version uint32) (KeyVersionChange, error) {
	return a.versionOffline(ctx, "keys.destroy", keyID, version, a.Destroy)
}

// versionOffline runs do, a change to one version of keyID, audited as
// action on system/keys/KEY_ID/versions/N (as the API records it) on the
// offline chain.
func (a *Admin) versionOffline(ctx context.Context, action, keyID string, version uint32, do versionOp) (KeyVersionChange, error) {
	var out KeyVersionChange
	err := a.c.Audited(ctx, action, coffer.SystemKeyVersionTarget(keyID, version), func() (err error) {
		out, err = do(ctx, keyID, version)
		return err
	})
	return out, err
}
