package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/token"
)

// SigningKeyID names the access token signing key for RotateKey.
const SigningKeyID = "jwt/signing"

// KeyRotation is what a key rotation did.
type KeyRotation = httpapi.KeyRotation

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
func rotatable(keyID string) bool {
	if IsAuditKey(keyID) {
		return true
	}
	for _, p := range []string{"index/", "mask/hash/"} {
		if rest, ok := strings.CutPrefix(keyID, p); ok {
			c, f, ok := strings.Cut(rest, "/")
			return ok && c != "" && f != "" && !strings.Contains(f, "/")
		}
	}
	for _, p := range []string{"collection/", "subject/", "tokens/"} {
		if name, ok := strings.CutPrefix(keyID, p); ok && name != "" {
			return !token.FixedKey(keyID)
		}
	}
	return false
}

// rotateKey rotates keyID in c and, for the keys of record values,
// schedules a rewrap.
func rotateKey(ctx context.Context, c *components, jobs *lifecycle.Jobs, keyID string) (KeyRotation, error) {
	out := KeyRotation{KeyID: keyID}
	if keyID == SigningKeyID {
		if err := c.identity.RotateSigningKey(ctx); err != nil {
			return out, err
		}
		return out, nil
	}
	if !rotatable(keyID) {
		return out, coffer.Errorf(coffer.EINVALID,
			"this key cannot be rotated here: rotate collection/NAME, subject/NAME, index/COLLECTION/FIELD, mask/hash/COLLECTION/FIELD, tokens/TYPE[/fpe|/deterministic], %s, %s or %s (transit keys: POST /v1/keys/{name}/rotate)",
			AuditHMACKeyID, AuditSigningKeyID, SigningKeyID)
	}
	rows, err := c.db.DataKeys(ctx, keyID)
	if err != nil {
		return out, err
	}
	if len(rows) == 0 {
		return out, coffer.Errorf(coffer.ENOTFOUND, "no such key")
	}
	v, err := c.keys.Rotate(ctx, keyID)
	if errors.Is(err, keyring.ErrKeyDestroyed) {
		return out, coffer.Errorf(coffer.ECONFLICT, "the key was destroyed (its subject erased); it cannot be rotated")
	}
	if err != nil {
		return out, err
	}
	out.Version = v
	if strings.HasPrefix(keyID, "collection/") || strings.HasPrefix(keyID, "subject/") {
		if err := jobs.RequestRewrap(ctx); err != nil {
			return out, fmt.Errorf("key rotated to version %d, but the rewrap could not be scheduled: %w", v, err)
		}
		out.RewrapScheduled = true
	}
	// A reindex needs no scheduling state: every run of the jobs looks for
	// entries under an older version.
	out.ReindexScheduled = strings.HasPrefix(keyID, "index/")
	return out, nil
}

// autoRotation configures the jobs' automatic rotation of data keys from
// cfg.Keys: each due key is rotated by rotateKey, as `coffer keys rotate`
// does (so the record keys' rewrap is scheduled, and rotatable still
// refuses what an operator may not rotate), and counted in the key
// operations metric (auto_rotate, ok or error). A key left unrotated
// because it holds too many values for a rotation to help is counted in
// its own metric. Both are logged by the job.
func (s *Server) autoRotation(c *components) lifecycle.RotationConfig {
	k := s.cfg.Keys
	return lifecycle.RotationConfig{
		Policy: lifecycle.RotationPolicy{
			After:     k.RotateAfter.Duration,
			AfterUses: uint64(max(k.RotateAfterUses, 0)), // #nosec G115 -- clamped to non-negative; validated at most 2^32
		},
		Interval:  k.RotateCheckInterval.Duration,
		Flush:     c.keys.FlushUses,
		RootWraps: c.keys.RootWraps,
		Rotate: func(ctx context.Context, keyID string) (uint32, error) {
			out, err := rotateKey(ctx, c, s.jobs, keyID)
			switch {
			case err == nil:
				s.metrics.KeyOps.WithLabelValues("auto_rotate", "ok").Inc()
			case ctx.Err() == nil:
				s.metrics.KeyOps.WithLabelValues("auto_rotate", "error").Inc()
			}
			return out.Version, err
		},
		OnTooManyValues: func(string) {
			s.metrics.KeysTooManyValues.Inc()
		},
	}
}

// keyAdmin is the serving node's httpapi.KeyAdmin: after a rotation that
// needs a rewrap it starts one at once instead of waiting for the
// scheduler's next tick.
type keyAdmin struct {
	c    *components
	jobs *lifecycle.Jobs
	bg   context.Context
	log  *slog.Logger
}

func (a *keyAdmin) RotateKey(ctx context.Context, keyID string) (KeyRotation, error) {
	out, err := rotateKey(ctx, a.c, a.jobs, keyID)
	if err != nil {
		return out, err
	}
	a.log.Info("key rotated", "key_id", keyID, "version", out.Version, "rewrap", out.RewrapScheduled)
	if out.ReindexScheduled {
		// Once every node can know the new version (see
		// vault.Config.ReindexAfter).
		a.soon("reindex", a.c.vault.ReindexDelay(), func() ([]any, error) {
			n, err := a.jobs.Reindex(a.bg)
			return []any{"entries", n}, err
		})
	}
	if out.RewrapScheduled {
		a.soon("rewrap", 0, func() ([]any, error) {
			rep, err := a.jobs.Rewrap(a.bg, 0)
			return []any{"records", rep.Rewrapped, "done", rep.Done}, err
		})
	}
	return out, nil
}

// soon runs a background job after delay, in the background context, and
// logs its outcome; another node holding the job's lease is no failure, and
// the scheduler retries a failed run.
func (a *keyAdmin) soon(job string, delay time.Duration, run func() ([]any, error)) {
	go func() {
		if delay > 0 {
			t := time.NewTimer(delay + 100*time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
			case <-a.bg.Done():
				return
			}
		}
		attrs, err := run()
		switch {
		case errors.Is(err, lifecycle.ErrBusy):
		case err != nil && a.bg.Err() == nil:
			a.log.Warn(job+" after rotation failed; the scheduler retries", "error", err)
		case err == nil:
			a.log.Info(job+" after rotation", attrs...)
		}
	}()
}

// RotateKey rotates one of cfg's keyring keys offline, against the store
// (see rotatable for the key ids; SigningKeyID rotates the token signing
// key). Running nodes use the new version within the keyring's cache time
// (the audit writer at its next batch after that); the rewrap of
// collection and subject keys is scheduled for the next node that runs
// its background jobs.
func RotateKey(ctx context.Context, cfg *config.Config, keyID string) (KeyRotation, error) {
	c, err := open(ctx, cfg, Options{Offline: true})
	if err != nil {
		return KeyRotation{KeyID: keyID}, err
	}
	defer c.Close()
	jobs := lifecycle.New(lifecycle.Config{Store: c.db, Keys: c.keys, Node: cfg.Node})
	out := KeyRotation{KeyID: keyID}
	err = auditedOffline(ctx, c, "keys.rotate", coffer.SystemKeyTarget(keyID), func() (err error) {
		out, err = rotateKey(ctx, c, jobs, keyID)
		return err
	})
	return out, err
}

// RootRotation is what RotateRoot did.
type RootRotation struct {
	// Rewrapped counts the data key versions moved to the new root key.
	Rewrapped int
	// NewKeyFile is the root key file the configuration now names.
	NewKeyFile string
	// OldKeyFile is where the old root key was kept; destroy it once no
	// backup written under it is needed any more.
	OldKeyFile string
}

// RotateRoot moves every data key of cfg's store from the root key file
// to the key in newKeyFile (a 32-byte base64 key, mode 0600, made like
// init's), then points the configuration at newKeyFile and renames the
// old key file to FILE.old (0600). Stop every node first and start them
// again afterwards: a node still holding the old key could make keys under
// it. Backups written before keep needing the old key.
func RotateRoot(ctx context.Context, cfg *config.Config, newKeyFile string) (RootRotation, error) {
	var out RootRotation
	if cfg.RootKey.Provider != config.ProviderFile {
		return out, fmt.Errorf("rotate-root moves a file root key to another file; this deployment uses provider %q", cfg.RootKey.Provider)
	}
	newAbs, err := filepath.Abs(newKeyFile)
	if err != nil {
		return out, err
	}
	oldAbs := cfg.RootKey.File
	if newAbs == oldAbs {
		return out, errors.New("the new root key file is the current one")
	}
	oldKept := oldAbs + ".old"
	if _, err := os.Lstat(oldKept); err == nil {
		return out, fmt.Errorf("%s exists: destroy or move the previous old root key first", oldKept)
	}
	np, err := keyprovider.OpenFile(newAbs)
	if err != nil {
		return out, fmt.Errorf("new root key: %w", err)
	}
	// The file on disk, without the environment's overrides, is what
	// gets rewritten.
	fileCfg, err := config.Load(cfg.Dir(), nil)
	if err != nil {
		return out, err
	}
	c, err := open(ctx, cfg, Options{Offline: true})
	if err != nil {
		return out, err
	}
	defer c.Close()
	err = auditedOffline(ctx, c, "keys.rotate_root", coffer.SystemKeyTarget("root"), func() error {
		n, err := c.keys.RewrapRoot(ctx, np, keyStore{c.db})
		out.Rewrapped = n
		if err != nil {
			return fmt.Errorf("rewrap under the new root key (%d moved; run again to finish): %w", n, err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotAudited) {
		return out, err
	}
	// Rewrapped but not audited: the store is under the new key already,
	// so the config must follow it; the error is reported at the end.
	notAudited := err
	if err := os.Rename(oldAbs, oldKept); err != nil {
		return out, fmt.Errorf("the store is now under the new root key, but keeping the old key as %s failed (point root_key.file at %s by hand): %w", oldKept, newAbs, err)
	}
	if err := fileCfg.Set("root_key.file", newAbs); err != nil {
		return out, err
	}
	if err := config.Replace(cfg.Dir(), fileCfg); err != nil {
		return out, fmt.Errorf("the store is now under the new root key, but the config could not be updated (set root_key.file to %s by hand): %w", newAbs, err)
	}
	out.NewKeyFile, out.OldKeyFile = newAbs, oldKept
	return out, notAudited
}

// SigningKeyRevocation is what a revocation of a signing key did.
type SigningKeyRevocation = identity.SigningKeyRevocation

// RevokeSigningKey is the serving node's revoke-signing (see
// RevokeSigningKey, the offline one).
func (a *keyAdmin) RevokeSigningKey(ctx context.Context, kid string) (SigningKeyRevocation, error) {
	out, err := a.c.identity.RevokeSigningKey(ctx, kid)
	if err != nil {
		return out, err
	}
	a.log.Warn("access token signing key revoked: every token it signed is refused", "kid", kid,
		"new_active_kid", out.NewActiveKID)
	return out, nil
}

// RevokeSigningKey drops the access token signing key kid of cfg's store
// at once, offline (a leaked key): serving nodes refuse every token it
// signed from their next request on, and stop publishing it at their next
// refresh. When it is the active key, a new one is made first. Audited on
// the chain NODE/offline as keys.revoke_signing.
func RevokeSigningKey(ctx context.Context, cfg *config.Config, kid string) (SigningKeyRevocation, error) {
	out := SigningKeyRevocation{KID: kid}
	c, err := open(ctx, cfg, Options{Offline: true})
	if err != nil {
		return out, err
	}
	defer c.Close()
	err = auditedOffline(ctx, c, "keys.revoke_signing", coffer.SystemKeyTarget(SigningKeyID)+"/kids/"+url.PathEscape(kid), func() (err error) {
		out, err = c.identity.RevokeSigningKey(ctx, kid)
		return err
	})
	return out, err
}
