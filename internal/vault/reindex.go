package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/fieldtype"
)

// ReindexReport says what one Reindex pass did.
type ReindexReport struct {
	// Moved entries now sit under their field's newest index key version.
	Moved int
	// Skipped entries could not be moved: the record or its value is
	// gone, or it changed meanwhile (its update filed a current entry).
	Skipped int
}

// ReindexDelay is how long after an index key rotation Reindex starts
// moving entries (Config.ReindexAfter).
func (v *Vault) ReindexDelay() time.Duration { return max(v.c.ReindexAfter, 0) }

// ErrReindexStore: the store cannot list or move index entries.
var ErrReindexStore = errors.New("vault: the store cannot reindex")

// reindexStore is what Reindex needs beyond Store.
type reindexStore interface {
	DataKeys(ctx context.Context, keyID string) ([]coffer.DataKey, error)
	StaleIndexEntries(ctx context.Context, collection, field string, version uint32, afterID string, limit int) ([]coffer.IndexRef, error)
	MoveIndexEntry(ctx context.Context, collection, recordID string, old, next coffer.IndexEntry) (bool, error)
}

// Reindex moves every blind index entry filed under an older version of
// its field's index key to the newest version, batch records at a time:
// after an index key rotation, search looks under every live version
// (MACAll) until this has run. Each value is opened, normalised and MACed
// again; no value leaves the process. An entry changed by a concurrent
// update is left to that update. Run it on one node at a time.
func (v *Vault) Reindex(ctx context.Context, batch int) (ReindexReport, error) {
	var rep ReindexReport
	st, ok := v.c.Store.(reindexStore)
	if !ok {
		return rep, ErrReindexStore
	}
	if batch <= 0 {
		batch = 500
	}
	cols, err := v.c.Store.Collections(ctx)
	if err != nil {
		return rep, err
	}
	for _, col := range cols {
		for _, f := range col.Fields {
			if !f.Searchable {
				continue
			}
			if err := v.reindexField(ctx, st, col.Name, f, batch, &rep); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

func (v *Vault) reindexField(ctx context.Context, st reindexStore, collection string, f coffer.Field, batch int, rep *ReindexReport) error {
	keyID := indexKeyID(collection, f.Name)
	cur, err := v.c.Keys.CurrentVersion(ctx, keyID)
	if err != nil {
		return fmt.Errorf("vault: reindex %s: %w", keyID, err)
	}
	if cur == 1 {
		return nil // never rotated: nothing older to move
	}
	if v.c.ReindexAfter > 0 {
		keys, err := st.DataKeys(ctx, keyID)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.Version == cur && v.c.Now().Sub(k.Created) < v.c.ReindexAfter {
				return nil // not every node may know the new version yet: next run
			}
		}
	}
	after, skipped := "", 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		refs, err := st.StaleIndexEntries(ctx, collection, f.Name, cur, after, batch)
		if err != nil {
			return err
		}
		if len(refs) == 0 {
			if skipped == 0 {
				// Every entry moved (or none was stale): nothing is filed
				// under an older version any more. Retire them, so search
				// stops looking under them.
				return v.retireOld(ctx, st, keyID, cur)
			}
			return nil // the next run tries the skipped ones again
		}
		ids := make([]string, len(refs))
		for i, r := range refs {
			ids[i] = r.RecordID
		}
		recs, err := v.c.Store.Records(ctx, collection, ids)
		if err != nil {
			return err
		}
		byID := make(map[string]coffer.SealedRecord, len(recs))
		for _, r := range recs {
			byID[r.ID] = r
		}
		for _, ref := range refs {
			after = ref.RecordID
			moved, err := v.reindexOne(ctx, st, keyID, f, byID[ref.RecordID], ref)
			if err != nil {
				return err
			}
			if moved {
				rep.Moved++
			} else {
				rep.Skipped++
				skipped++
			}
		}
	}
}

// errStoredInvalid: a stored value that no longer validates as its field.
var errStoredInvalid = errors.New("vault: a stored value no longer validates")

// storedIndexForm opens rec's value env of field f and returns the form
// its blind index entry is made from, as on write today: a stored value
// is normalised again (text written before it was put in NFC is now), and
// integers are stored in their canonical decimal form. Errors from opening come back unchanged; a value that no longer
// validates is errStoredInvalid. The plaintext bytes are cleared.
func (v *Vault) storedIndexForm(ctx context.Context, rec coffer.SealedRecord, f coffer.Field, env []byte) (string, error) {
	pt, err := v.c.Keys.Open(ctx, rec.KeyID, env, valueAAD(&rec, f.Name))
	if err != nil {
		return "", err
	}
	indexed := string(pt)
	clear(pt)
	if f.Type != coffer.TypeInteger {
		if _, indexed, err = fieldtype.NormalizeText(f, indexed, false); err != nil {
			return "", errStoredInvalid
		}
	}
	return indexed, nil
}

// reindexOne moves one entry; false when there is nothing to move it for.
func (v *Vault) reindexOne(ctx context.Context, st reindexStore, keyID string, f coffer.Field, rec coffer.SealedRecord, ref coffer.IndexRef) (bool, error) {
	env, ok := rec.Values[f.Name]
	if rec.ID == "" || !ok {
		return false, nil // the record or the field is gone
	}
	indexed, err := v.storedIndexForm(ctx, rec, f, env)
	switch {
	case errors.Is(err, keyring.ErrKeyDestroyed), errors.Is(err, keyring.ErrKeyRetired),
		errors.Is(err, keyring.ErrKeyNotFound), errors.Is(err, keyring.ErrVersionDestroyed),
		errors.Is(err, envelope.ErrDecrypt), errors.Is(err, errStoredInvalid):
		// A subject erased meanwhile, a value rewrapped and updated since
		// the listing, or one that no longer validates: not this job's to
		// decide; its entry stays.
		return false, nil
	case err != nil:
		return false, fmt.Errorf("vault: reindex %s: %w", keyID, err)
	}
	ver, mac, err := v.c.Keys.MAC(ctx, keyID, []byte(indexed))
	if err != nil {
		return false, fmt.Errorf("vault: reindex %s: %w", keyID, err)
	}
	return st.MoveIndexEntry(ctx, rec.Collection, rec.ID, ref.IndexEntry, coffer.IndexEntry{Field: f.Name, Version: ver, MAC: mac})
}

// retireOld retires every active index key version below cur, once no
// entry is filed under one. Each node's search stops looking under them
// within its key cache time.
func (v *Vault) retireOld(ctx context.Context, st reindexStore, keyID string, cur uint32) error {
	keys, err := st.DataKeys(ctx, keyID)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Version < cur && k.State == coffer.KeyActive {
			if err := v.c.Keys.Retire(ctx, keyID, k.Version); err != nil {
				return fmt.Errorf("vault: retire %s version %d: %w", keyID, k.Version, err)
			}
		}
	}
	return nil
}

// indexCounter is what ReindexProgress needs beyond Store.
type indexCounter interface {
	IndexEntryCounts(ctx context.Context, collection, field string, version uint32) (stale, total int64, err error)
}

// ReindexProgress counts the blind index entries of every searchable
// field whose index key was rotated (total) and those of them already
// under the field's newest version (done): how far Reindex has come.
func (v *Vault) ReindexProgress(ctx context.Context) (done, total int64, err error) {
	st, ok := v.c.Store.(indexCounter)
	if !ok {
		return 0, 0, ErrReindexStore
	}
	cols, err := v.c.Store.Collections(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, col := range cols {
		for _, f := range col.Fields {
			if !f.Searchable {
				continue
			}
			cur, err := v.c.Keys.CurrentVersion(ctx, indexKeyID(col.Name, f.Name))
			if err != nil {
				return 0, 0, fmt.Errorf("vault: reindex progress: %w", err)
			}
			if cur <= 1 {
				continue
			}
			stale, all, err := st.IndexEntryCounts(ctx, col.Name, f.Name, cur)
			if err != nil {
				return 0, 0, err
			}
			done += all - stale
			total += all
		}
	}
	return done, total, nil
}
