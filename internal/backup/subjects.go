package backup

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault"
)

// ErrSubjectKeySourceRootKey: the subject-key source of a restore is not
// under the root key the backup was written under.
var ErrSubjectKeySourceRootKey = errors.New("subject-key source: it is not under this backup's root key (subject keys are only taken from a deployment under the same root key)")

// ErrSubjectKeySourceMismatch: the subject keys from the source do not
// open the backup's subject-bound values.
var ErrSubjectKeySourceMismatch = errors.New("subject-key source: its subject keys do not open the backup's values: it is not the deployment this backup was taken from")

// subjectKeyBatch is how many subject keys, and records, one step handles.
const subjectKeyBatch = 500

// subjectKeySourceDSN finds the store of the subject-key source: the
// database URL if given, else the store the source directory's config
// file names (the environment is this command's, not the source's).
func subjectKeySourceDSN(opts RestoreOptions, newDir string) (string, error) {
	if d := opts.SubjectKeysFromDataDir; d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			return "", fmt.Errorf("subject-key source: %w", err)
		}
		if abs == newDir {
			return "", errors.New("subject-key source: it is the directory being restored into")
		}
		if !config.Initialised(abs) {
			return "", fmt.Errorf("subject-key source: %s is not an initialised deployment (no %s)", abs, config.FileName)
		}
		if opts.SubjectKeysFromDatabaseURL == "" {
			cfg, err := config.Load(abs, nil)
			if err != nil {
				return "", fmt.Errorf("subject-key source: %w", err)
			}
			return cfg.StoreDSN(), nil
		}
	}
	u := opts.SubjectKeysFromDatabaseURL
	if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		return "", errors.New("subject-key source: the database URL must be a postgres:// or postgresql:// URL")
	}
	if u == opts.DatabaseURL {
		return "", errors.New("subject-key source: it is the database being restored into")
	}
	return u, nil
}

// openSubjectKeySource opens the subject-key source read-only and checks
// that it is an initialised store at this binary's schema whose keys p
// opens. Nothing is written to it, ever.
func openSubjectKeySource(ctx context.Context, opts RestoreOptions, newDir string, p keyprovider.Provider) (*store.DB, error) {
	srcDSN, err := subjectKeySourceDSN(opts, newDir)
	if err != nil {
		return nil, err
	}
	src, err := store.OpenReadOnly(ctx, srcDSN)
	if err != nil {
		return nil, fmt.Errorf("subject-key source: %w", err)
	}
	fail := func(err error) (*store.DB, error) {
		_ = src.Close()
		return nil, err
	}
	cur, latest, err := src.SchemaVersions(ctx)
	if err != nil {
		return fail(fmt.Errorf("subject-key source: %w", err))
	}
	if cur != latest {
		return fail(fmt.Errorf("subject-key source: its schema is at version %d, this coffer's at %d: run the same coffer version on both (coffer migrate)", cur, latest))
	}
	rows, err := src.DataKeys(ctx, keyring.RootCheckKeyID)
	if err != nil {
		return fail(fmt.Errorf("subject-key source: %w", err))
	}
	if len(rows) == 0 {
		return fail(errors.New("subject-key source: its store has no root key check: it was never initialised"))
	}
	// Check only reads here: the store holds a check key, so it makes none.
	err = keyring.New(p, src, keyring.Options{}).Check(ctx)
	if errors.Is(err, keyring.ErrWrongRootKey) {
		return fail(ErrSubjectKeySourceRootKey)
	}
	if err != nil {
		return fail(fmt.Errorf("subject-key source: %w", err))
	}
	return src, nil
}

// restoreSubjects replaces the subject key tombstones of the restored
// store db with src's versions of those keys, copied wrapped, checks that
// they unwrap under p, and files the blind index entries of their records.
func restoreSubjects(ctx context.Context, opts RestoreOptions, p keyprovider.Provider, db, src *store.DB, res *RestoreResult) error {
	kr := keyring.New(p, db, keyring.Options{Rand: opts.Rand, Now: opts.Now})
	defer kr.Close()
	after := ""
	for {
		ids, err := db.SubjectKeyTombstones(ctx, after, subjectKeyBatch)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			break
		}
		after = ids[len(ids)-1]
		rows, err := src.DataKeysIn(ctx, ids)
		if err != nil {
			return fmt.Errorf("subject-key source: %w", err)
		}
		byID := make(map[string][]coffer.DataKey, len(ids))
		for _, r := range rows {
			byID[r.KeyID] = append(byID[r.KeyID], r)
		}
		var copied []coffer.DataKey
		var restored []string
		for _, id := range ids {
			versions := byID[id]
			switch {
			case len(versions) == 0:
				res.SubjectKeysMissing++
			case coffer.Erased(versions):
				// Erased in the source: the tombstone stays, and not a
				// byte of a version that may have escaped the erasure is
				// copied.
				res.SubjectKeysErased++
			default:
				// A version destroyed on its own comes as a tombstone
				// (no bytes), so its values read as unreadable.
				copied = append(copied, versions...)
				restored = append(restored, id)
			}
		}
		if len(copied) == 0 {
			continue
		}
		n, err := db.RestoreSubjectKeys(ctx, copied)
		if err != nil {
			return err
		}
		res.SubjectKeysRestored += n
		// Each restored key must unwrap under this root key (a source in
		// the middle of a root key rotation could hold keys it does not
		// open). They are unwrapped in memory only, and zeroed on Close.
		for _, id := range restored {
			if _, err := kr.CurrentVersion(ctx, id); err != nil && !errors.Is(err, keyring.ErrKeyRetired) {
				if errors.Is(err, keyprovider.ErrUnwrap) {
					return fmt.Errorf("subject-key source: a subject key does not unwrap under this root key (is a root key rotation unfinished there?): %w", err)
				}
				return fmt.Errorf("subject-key source: check a restored subject key: %w", err)
			}
		}
		if err := kr.Close(); err != nil {
			return err
		}
	}
	if res.SubjectKeysRestored == 0 {
		return nil
	}
	v := vault.New(vault.Config{Store: db, Keys: kr, Rand: opts.Rand, Now: opts.Now})
	rep, err := v.IndexSubjectRecords(ctx, subjectKeyBatch)
	if err != nil {
		return fmt.Errorf("index the restored subjects' records: %w", err)
	}
	if rep.WrongKey > 0 {
		return fmt.Errorf("%w (%d values do not open)", ErrSubjectKeySourceMismatch, rep.WrongKey)
	}
	res.IndexEntriesAdded, res.SubjectValuesUnreadable = rep.Entries, rep.Unreadable
	return nil
}
