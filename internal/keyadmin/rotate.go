package keyadmin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/identity"
)

// SigningKeyID names the access token signing key (the
// system/keys/jwt/signing resource).
const SigningKeyID = "jwt/signing"

// KeyRotation is what a key rotation did.
type KeyRotation struct {
	KeyID string `json:"key_id"`
	// Version is the key's new version (0 for the token signing key,
	// whose keys are named, not numbered).
	Version uint32 `json:"version,omitempty"`
	// RewrapScheduled says a background rewrap will move every value to
	// the new version (collection and subject keys).
	RewrapScheduled bool `json:"rewrap_scheduled"`
	// ReindexScheduled says a background reindex will move every blind
	// index entry of the field to the new version (index keys); search
	// looks under both versions meanwhile.
	ReindexScheduled bool `json:"reindex_scheduled,omitempty"`
}

// SigningKeyRevocation is what a revocation of a signing key did.
type SigningKeyRevocation = identity.SigningKeyRevocation

// rotatable reports whether keyID is a keyring key an operator may rotate:
// collection and subject keys (their values are then rewrapped), blind
// index keys index/COLLECTION/FIELD (their entries are then reindexed),
// pseudonym keys mask/hash/COLLECTION/FIELD (the hash mask's pseudonyms
// of that field change), token keys, and the audit keys audit/hmac and
// audit/signing (the log goes on under the new version; every old one is
// kept for verification, and the keyring refuses to retire or destroy
// them). The token index and order keys and the root check key are never
// rotated this way (their MACs find rows), nor transit keys (use their
// own API).
func rotatable(keyID string) bool { return coffer.ParseKeyID(keyID).Rotatable() }

// Rotate rotates keyID (SigningKeyID rotates the token signing key) and,
// for the keys of record values, schedules a rewrap. It decides nothing:
// the automatic rotation and the offline command call it directly.
func (a *Admin) Rotate(ctx context.Context, keyID string) (KeyRotation, error) {
	out := KeyRotation{KeyID: keyID}
	if keyID == SigningKeyID {
		if err := a.c.SigningKeys.RotateSigningKey(ctx); err != nil {
			return out, err
		}
		return out, nil
	}
	if !rotatable(keyID) {
		return out, coffer.Errorf(coffer.EINVALID,
			"this key cannot be rotated here: rotate collection/NAME, subject/NAME, index/COLLECTION/FIELD, mask/hash/COLLECTION/FIELD, tokens/TYPE[/fpe|/deterministic], %s, %s or %s (transit keys: POST /v1/keys/{name}/rotate)",
			auditadmin.HMACKeyID, auditadmin.SigningKeyID, SigningKeyID)
	}
	rows, err := a.c.Store.DataKeys(ctx, keyID)
	if err != nil {
		return out, err
	}
	if len(rows) == 0 {
		return out, coffer.Errorf(coffer.ENOTFOUND, "no such key")
	}
	v, err := a.c.Keys.Rotate(ctx, keyID)
	if errors.Is(err, keyring.ErrKeyDestroyed) {
		return out, coffer.Errorf(coffer.ECONFLICT, "the key was destroyed (its subject erased); it cannot be rotated")
	}
	if err != nil {
		return out, err
	}
	out.Version = v
	id := coffer.ParseKeyID(keyID)
	if id.SealsRecords() {
		if err := a.c.Jobs.RequestRewrap(ctx); err != nil {
			return out, fmt.Errorf("key rotated to version %d, but the rewrap could not be scheduled: %w", v, err)
		}
		out.RewrapScheduled = true
	}
	// A reindex needs no scheduling state: every run of the jobs looks for
	// entries under an older version.
	out.ReindexScheduled = id.Reindexed()
	return out, nil
}

// RotateKey rotates keyID for an API caller with admin on
// system/keys/KEY_ID. Errors are *coffer.Error for what the caller got
// wrong (EINVALID for a key id that cannot be rotated this way, ENOTFOUND
// for one that does not exist, ECONFLICT for a destroyed key); anything
// else is internal. On a serving node, a rotation that needs a rewrap or a
// reindex starts it at once instead of waiting for the scheduler's tick.
func (a *Admin) RotateKey(ctx context.Context, c Caller, keyID string) (KeyRotation, error) {
	if err := a.admit(c, "keys.rotate", keyID, 0); err != nil {
		return KeyRotation{}, err
	}
	out, err := a.Rotate(ctx, keyID)
	if err != nil {
		return out, err
	}
	a.c.Logger.Info("key rotated", "key_id", keyID, "version", out.Version, "rewrap", out.RewrapScheduled)
	c.Note.Count = 1
	if out.Version > 0 {
		c.Note.Touch(coffer.SystemKeyVersionTarget(keyID, out.Version))
	} else {
		c.Note.Touch(coffer.SystemKeyTarget(keyID)) // the token signing key's versions are named, not numbered
	}
	if a.c.Background == nil {
		return out, nil
	}
	if out.ReindexScheduled {
		// Once every node can know the new version (see
		// vault.Config.ReindexAfter).
		a.soon("reindex", a.reindexDelay(), func() ([]any, error) {
			n, err := a.c.Jobs.Reindex(a.c.Background)
			return []any{"entries", n}, err
		})
	}
	if out.RewrapScheduled {
		a.soon("rewrap", 0, func() ([]any, error) {
			rep, err := a.c.Jobs.Rewrap(a.c.Background, 0)
			return []any{"records", rep.Rewrapped, "done", rep.Done}, err
		})
	}
	return out, nil
}

// RotateOffline rotates keyID against the store, without a server,
// audited on the offline chain as keys.rotate. Running nodes use the new
// version within the keyring's cache time (the audit writer at its next
// batch after that); the rewrap of collection and subject keys is
// scheduled for the next node that runs its background jobs.
func (a *Admin) RotateOffline(ctx context.Context, keyID string) (KeyRotation, error) {
	out := KeyRotation{KeyID: keyID}
	err := a.c.Audited(ctx, "keys.rotate", coffer.SystemKeyTarget(keyID), func() (err error) {
		out, err = a.Rotate(ctx, keyID)
		return err
	})
	return out, err
}

// RevokeSigningKey drops the access token signing key kid for an API caller
// with admin on system/keys/jwt/signing (making a new active key first when
// it is the active one), so that every token it signed is refused on every
// node. ENOTFOUND for an unknown kid.
func (a *Admin) RevokeSigningKey(ctx context.Context, c Caller, kid string) (SigningKeyRevocation, error) {
	const action = "keys.revoke_signing"
	if kid == "" || len(kid) > 128 || !printableASCII(kid) {
		return SigningKeyRevocation{}, coffer.Errorf(coffer.EINVALID, "kid must be 1 to 128 printable ASCII characters")
	}
	if err := a.admit(c, action, SigningKeyID, 0); err != nil {
		return SigningKeyRevocation{}, err
	}
	out, err := a.c.SigningKeys.RevokeSigningKey(ctx, kid)
	if err != nil {
		return out, err
	}
	a.c.Logger.Warn("access token signing key revoked: every token it signed is refused", "kid", kid,
		"new_active_kid", out.NewActiveKID)
	// Named once it is known to be one of ours: a caller's made-up kid
	// never reaches the log.
	res := signingKeyTarget(out.KID)
	c.Note.Target(action, res)
	c.Note.Count = 1
	c.Note.Touch(res)
	return out, nil
}

// RevokeSigningKeyOffline drops signing key kid against the store, without
// a server (a leaked key): serving nodes refuse every token it signed from
// their next request on, and stop publishing it at their next refresh.
// When it is the active key, a new one is made first. Audited on the
// offline chain as keys.revoke_signing.
func (a *Admin) RevokeSigningKeyOffline(ctx context.Context, kid string) (SigningKeyRevocation, error) {
	out := SigningKeyRevocation{KID: kid}
	err := a.c.Audited(ctx, "keys.revoke_signing", signingKeyTarget(kid), func() (err error) {
		out, err = a.c.SigningKeys.RevokeSigningKey(ctx, kid)
		return err
	})
	return out, err
}

func signingKeyTarget(kid string) string {
	return coffer.SystemKeyTarget(SigningKeyID) + "/kids/" + url.PathEscape(kid)
}

func (a *Admin) reindexDelay() time.Duration {
	if a.c.ReindexDelay == nil {
		return 0
	}
	return a.c.ReindexDelay()
}
