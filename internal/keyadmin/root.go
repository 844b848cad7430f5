package keyadmin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/progress"
	"github.com/cofferhq/coffer/internal/store"
)

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
//
// open opens the deployment's Admin (and returns what closes it) once the
// new key file and the configuration have been checked.
func RotateRoot(ctx context.Context, cfg *config.Config, newKeyFile string, open func(context.Context) (*Admin, func(), error)) (RootRotation, error) {
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
	a, closeAdmin, err := open(ctx)
	if err != nil {
		return out, err
	}
	defer closeAdmin()
	err = a.c.Audited(ctx, "keys.rotate_root", coffer.SystemKeyTarget("root"), func() error {
		total, err := a.c.Store.CountDataKeys(ctx)
		if err != nil {
			return err
		}
		n, err := a.c.Keys.RewrapRoot(ctx, np, &countingKeyStore{DB: a.c.Store, total: total, fn: progress.Of(ctx)})
		out.Rewrapped = n
		if err != nil {
			return fmt.Errorf("rewrap under the new root key (%d moved; run again to finish): %w", n, err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, auditadmin.ErrNotAudited) {
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

// countingKeyStore is the store of a root key rotation, telling fn of the
// data key versions walked of all (a walk visits each once; the last
// walks, which find nothing left to move, show as complete).
type countingKeyStore struct {
	*store.DB
	seen, total int64
	fn          progress.Func
}

func (c *countingKeyStore) DataKeysAfter(ctx context.Context, keyID string, version uint32, limit int) ([]coffer.DataKey, error) {
	rows, err := c.DB.DataKeysAfter(ctx, keyID, version, limit)
	c.seen += int64(len(rows))
	c.fn(min(c.seen, c.total), c.total)
	return rows, err
}
