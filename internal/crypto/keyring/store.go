package keyring

import (
	"context"
	"errors"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Store keeps wrapped data keys. The SQLite and PostgreSQL stores implement
// it; every node of a deployment shares one. Implementations must be safe
// for concurrent use.
type Store interface {
	// DataKeys returns every version of keyID, in any order, in every
	// state; none is an empty result and a nil error.
	DataKeys(ctx context.Context, keyID string) ([]coffer.DataKey, error)
	// InsertDataKey stores a new version. It must return an error wrapping
	// ErrVersionExists if (KeyID, Version) already exists: that is how two
	// nodes creating the same version at once are told apart.
	InsertDataKey(ctx context.Context, k coffer.DataKey) error
	// SetDataKeyState sets the state of one version.
	SetDataKeyState(ctx context.Context, keyID string, version uint32, state string) error
	// DestroyDataKeys sets every version of keyID to coffer.KeyDestroyed and
	// erases its wrapped bytes, durably, before it returns.
	DestroyDataKeys(ctx context.Context, keyID string) error
}

// VersionStore is what a Store also implements to end or bring back one
// version of a key id (Keyring.DestroyVersion, Keyring.Unretire, and a
// Retire that cannot undo a concurrent destruction). The SQLite and
// PostgreSQL stores implement it.
type VersionStore interface {
	// SwapDataKeyState sets the state of one version to to only if it is
	// from, and reports whether it did.
	SwapDataKeyState(ctx context.Context, keyID string, version uint32, from, to string) (bool, error)
	// DestroyRetiredDataKey sets one version to coffer.KeyDestroyed and
	// erases its wrapped bytes, durably, only if it is coffer.KeyRetired,
	// and reports whether it did.
	DestroyRetiredDataKey(ctx context.Context, keyID string, version uint32) (bool, error)
}

// ErrVersionExists is what a Store's InsertDataKey wraps when the version
// already exists.
var ErrVersionExists = coffer.ErrKeyVersionExists

// Errors callers branch on (with errors.Is).
//
// The three that say a key or version has ended are also domain errors
// (*coffer.Error, 409 with a problem type of their own, a message safe to
// show), so that a path that meets one without a more specific answer
// still gives a documented 4xx, never an internal error: ending keys is
// an operator's act, not a fault.
var (
	// ErrKeyDestroyed: the key id was destroyed (crypto-shredded); its
	// values are gone for good and it seals nothing new.
	ErrKeyDestroyed error = &coffer.Error{Code: coffer.ECONFLICT, Type: coffer.ProblemKeyDestroyed,
		Message: "the key was destroyed; what it sealed is gone for good, and it seals nothing new"}
	// ErrKeyRetired: the version was retired and no longer decrypts, or
	// the key id has no active version left to encrypt with.
	ErrKeyRetired error = &coffer.Error{Code: coffer.ECONFLICT, Type: coffer.ProblemKeyRetired,
		Message: "the key has no active version to seal with, or a value is sealed under a retired version (an operator may unretire it)"}
	// ErrVersionDestroyed: one version of a key id that lives on was
	// destroyed (DestroyVersion); values sealed under it are gone for good.
	// Other versions are unaffected.
	ErrVersionDestroyed error = &coffer.Error{Code: coffer.ECONFLICT, Type: coffer.ProblemKeyVersionDestroyed,
		Message: "a value is sealed under a key version that was destroyed; it is gone for good"}
	// ErrNotRetired: DestroyVersion was asked to destroy a version that is
	// not retired; retire it first.
	ErrNotRetired = errors.New("keyring: only a retired version can be destroyed; retire it first")
	// ErrKeyNotFound: the key id has no versions, or not the one asked for.
	ErrKeyNotFound = errors.New("keyring: no such key")
	// ErrCurrentVersion: Retire was asked to retire the version that
	// encrypts; rotate first.
	ErrCurrentVersion = errors.New("keyring: cannot retire the version that encrypts; rotate first")
	// ErrWrongRootKey: the root key cannot unwrap the keys in the Store;
	// it is not the root key they were made with.
	ErrWrongRootKey = errors.New("keyring: wrong root key: it cannot unwrap the keys in the store")
	// ErrMaterialSize: Import was given key material that is not 32
	// bytes (a data key is AES-256).
	ErrMaterialSize = errors.New("keyring: imported key material must be 32 bytes")
	// ErrUseLimit: the version that would seal, or the root key that
	// would wrap, is at its hard stop (Options.SealLimit): it must be
	// rotated first. The error that wraps it is also a *coffer.Error with
	// EUNAVAILABLE, so a client is told to try again later.
	ErrUseLimit = errors.New("keyring: key at its use bound")
	// ErrKeyPermanent: Retire or Destroy was asked to end a version of a
	// key id that must keep every version (see Permanent).
	ErrKeyPermanent = errors.New("keyring: every version of this key is kept for good; it cannot be retired or destroyed")
)
