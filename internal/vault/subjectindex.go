package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// SubjectIndexReport says what one IndexSubjectRecords run did.
type SubjectIndexReport struct {
	// Scanned counts the subject-bound records without index entries
	// whose key is usable.
	Scanned int
	// Entries counts the blind index entries filed.
	Entries int
	// Unreadable counts values that did not open because their key
	// version is retired or gone; their fields stay out of the index.
	Unreadable int
	// WrongKey counts values that did not open under their record's key
	// at all: the key is not the one they were sealed with (or the value
	// is damaged). Their fields stay out of the index.
	WrongKey int
}

// subjectIndexStore is what IndexSubjectRecords needs beyond Store.
type subjectIndexStore interface {
	UnindexedSubjectRecords(ctx context.Context, collection, id string, limit int) ([]coffer.SealedRecord, error)
	AddMissingIndexEntries(ctx context.Context, recs []coffer.SealedRecord, idx [][]coffer.IndexEntry) (int, error)
}

// IndexSubjectRecords files the blind index entries of subject-bound
// records that have none although their subject's key is usable, batch
// records at a time: the records of a restored backup (a backup leaves
// their entries out) once their subject keys came back from another
// deployment. Each searchable value is opened, normalised and MACed under
// its field's current index key version, as on write; no value leaves the
// process. Records of an erased subject are never listed, and get no
// entry: they cannot be opened anyway.
//
// An entry goes in only where the record has none for the field and is
// unchanged since it was read, so a second run files nothing and a
// concurrent update wins. Values that do not open are counted (Unreadable,
// WrongKey) and left out; the caller decides whether that is a failure.
func (v *Vault) IndexSubjectRecords(ctx context.Context, batch int) (SubjectIndexReport, error) {
	var rep SubjectIndexReport
	st, ok := v.c.Store.(subjectIndexStore)
	if !ok {
		return rep, ErrReindexStore
	}
	if batch <= 0 {
		batch = 500
	}
	cols := map[string]coffer.Collection{}
	afterCol, afterID := "", ""
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		recs, err := st.UnindexedSubjectRecords(ctx, afterCol, afterID, batch)
		if err != nil {
			return rep, err
		}
		if len(recs) == 0 {
			return rep, nil
		}
		idx := make([][]coffer.IndexEntry, len(recs))
		for i, r := range recs {
			afterCol, afterID = r.Collection, r.ID
			col, ok := cols[r.Collection]
			if !ok {
				if col, err = v.c.Store.Collection(ctx, r.Collection); err != nil {
					return rep, fmt.Errorf("vault: index subject records: %w", err)
				}
				cols[r.Collection] = col
			}
			rep.Scanned++
			if idx[i], err = v.subjectEntries(ctx, col, r, &rep); err != nil {
				return rep, err
			}
		}
		n, err := st.AddMissingIndexEntries(ctx, recs, idx)
		if err != nil {
			return rep, err
		}
		rep.Entries += n
	}
}

// subjectEntries computes r's blind index entries as on write.
func (v *Vault) subjectEntries(ctx context.Context, col coffer.Collection, r coffer.SealedRecord, rep *SubjectIndexReport) ([]coffer.IndexEntry, error) {
	var out []coffer.IndexEntry
	for _, f := range col.Fields {
		env, ok := r.Values[f.Name]
		if !f.Searchable || !ok {
			continue
		}
		indexed, err := v.storedIndexForm(ctx, r, f, env)
		switch {
		case errors.Is(err, keyring.ErrKeyDestroyed):
			return nil, nil // erased since it was listed: no entry at all
		case errors.Is(err, keyring.ErrKeyRetired), errors.Is(err, keyring.ErrKeyNotFound),
			errors.Is(err, keyring.ErrVersionDestroyed), errors.Is(err, errStoredInvalid):
			rep.Unreadable++
			continue
		case errors.Is(err, envelope.ErrDecrypt):
			rep.WrongKey++
			continue
		case err != nil:
			return nil, fmt.Errorf("vault: index subject records: open a value of a record: %w", err)
		}
		ver, mac, err := v.c.Keys.MAC(ctx, indexKeyID(r.Collection, f.Name), []byte(indexed))
		if err != nil {
			return nil, fmt.Errorf("vault: index subject records: %s: %w", indexKeyID(r.Collection, f.Name), err)
		}
		out = append(out, coffer.IndexEntry{Field: f.Name, Version: ver, MAC: mac})
	}
	return out, nil
}
