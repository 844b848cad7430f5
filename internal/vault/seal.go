package vault

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// How a record is protected at rest (format 2, records with a revision):
//
//   - each value is sealed under the record's key with the AAD
//     (collection, id, field, revision), so a value moved to another
//     record or field, or put back from an earlier revision, does not open;
//   - Seal, an envelope of no plaintext under the same key, authenticates
//     everything else: the metadata (owner, subject, key id, canary,
//     created, updated and expiry times, revision) and the set of fields.
//     A removed or added field, or an edited column, makes it fail.
//
// Every write seals every value again under the new revision. A record of
// format 1 (revision 0, no Seal: written before) has values sealed with
// the AAD (collection, id, field); it stays readable (its metadata is not
// authenticated) until its next write or the rewrap job moves it to
// format 2. What the database's owner can still do: delete a record, or
// put back a whole earlier state of one (every column and value as they
// were together), which nothing inside the database can tell apart.

// msgIntegrity is the answer for a record that fails its check.
const msgIntegrity = "the record failed its integrity check: its stored data was changed outside Coffer"

// errTampered: a record's stored data does not authenticate.
var errTampered = &coffer.Error{Code: coffer.ECONFLICT, Type: coffer.ProblemIntegrity, Message: msgIntegrity}

// errSubjectErased: a write for a data subject that was erased.
var errSubjectErased = &coffer.Error{Code: coffer.ECONFLICT, Type: coffer.ProblemSubjectErased,
	Message: "the data subject was erased; nothing can be written for it again"}

// ErrTampered is what RewrapRecord wraps for a record that fails its
// integrity check; the rewrap leaves it as it is.
var ErrTampered = errors.New("vault: a record failed its integrity check")

// valueAAD is the additional data of r's value of field.
func valueAAD(r *coffer.SealedRecord, field string) []byte {
	if r.Revision == 0 {
		return envelope.AAD(r.Collection, r.ID, field) // format 1
	}
	return envelope.AAD(r.Collection, r.ID, field, strconv.FormatUint(r.Revision, 10))
}

// metaAAD is the additional data of r's Seal: every column but the values,
// then the number of fields and their names, each part length-prefixed, so
// no two records' metadata encode alike.
func metaAAD(r *coffer.SealedRecord) []byte {
	canary, exp := "0", ""
	if r.Canary {
		canary = "1"
	}
	if r.ExpiresAt != nil {
		exp = strconv.FormatInt(r.ExpiresAt.UnixMicro(), 10)
	}
	names := make([]string, 0, len(r.Values))
	for name := range r.Values {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := append([]string{"coffer/record/v2", r.Collection, r.ID, r.Owner, r.Subject, r.KeyID, canary,
		strconv.FormatInt(r.CreatedAt.UnixMicro(), 10), strconv.FormatInt(r.UpdatedAt.UnixMicro(), 10), exp,
		strconv.FormatUint(r.Revision, 10), strconv.Itoa(len(names))}, names...)
	return envelope.AAD(parts...)
}

// Sealer seals under named, versioned keys (the keyring).
type Sealer interface {
	Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
}

// SealRecord seals each of plaintexts into r.Values under r.KeyID at
// r.Revision (1 or more; values already in r.Values must be sealed at it
// too), then makes r.Seal over r as it is: the record as Coffer stores it.
// The vault's writes use it; so may jobs and tests that build records.
func SealRecord(ctx context.Context, keys Sealer, r *coffer.SealedRecord, plaintexts map[string][]byte) error {
	if r.Revision == 0 {
		return errors.New("vault: seal record: a record is sealed at revision 1 or more")
	}
	if r.Values == nil {
		r.Values = make(map[string][]byte, len(plaintexts))
	}
	for name, pt := range plaintexts {
		env, err := keys.Seal(ctx, r.KeyID, pt, valueAAD(r, name))
		if err != nil {
			return fmt.Errorf("vault: seal a value: %w", err)
		}
		r.Values[name] = env
	}
	s, err := keys.Seal(ctx, r.KeyID, nil, metaAAD(r))
	if err != nil {
		return fmt.Errorf("vault: seal record: %w", err)
	}
	r.Seal = s
	return nil
}

// opener is the part of the keyring that checks a record.
type opener interface {
	Open(ctx context.Context, keyID string, env, aad []byte) ([]byte, error)
}

// verify checks that r's stored data is as Coffer wrote it: its key is
// the one its collection and subject name, and its Seal authenticates its
// metadata and field set (format 1: its first value opens under the
// format's AAD, so a record cannot pass for one by losing its Seal). It
// returns errTampered, or the keyring's error when the key cannot open
// anything (an erased subject, an ended version).
func verify(ctx context.Context, keys opener, r *coffer.SealedRecord) error {
	if r.KeyID != keyIDFor(r.Collection, r.Subject) || len(r.Values) == 0 || (r.Revision == 0) != (len(r.Seal) == 0) {
		return errTampered
	}
	env, aad := r.Seal, metaAAD(r)
	if r.Revision == 0 {
		first := ""
		for name := range r.Values {
			if first == "" || name < first {
				first = name
			}
		}
		env, aad = r.Values[first], valueAAD(r, first)
	}
	pt, err := keys.Open(ctx, r.KeyID, env, aad)
	clear(pt)
	if errors.Is(err, envelope.ErrDecrypt) {
		return errTampered
	}
	return err
}

// tampered notes that record id failed its check, for the audit event and
// the data.integrity security event.
func tampered(c Caller, id string) {
	if c.Note != nil && len(c.Note.Tampered) < 100 {
		c.Note.Tampered = append(c.Note.Tampered, id)
	}
}

// readErr is the answer to a read that met err opening a record's data.
func readErr(err error) error {
	switch {
	case errors.Is(err, keyring.ErrKeyDestroyed):
		// The data subject was erased (crypto-shredded): the record is
		// gone for every purpose, even where a copy of it survives.
		return &coffer.Error{Code: coffer.ENOTFOUND, Message: "record not found (its data subject was erased)", Cause: err}
	case errors.Is(err, keyring.ErrKeyRetired), errors.Is(err, keyring.ErrVersionDestroyed):
		// An operator ended the key version the value is sealed under
		// (coffer keys retire/destroy refuse while values are on it).
		return &coffer.Error{Code: coffer.ECONFLICT, Cause: err,
			Message: "a value of this record is sealed under a retired or destroyed key version and cannot be opened (an operator may unretire a retired version)"}
	case errors.Is(err, envelope.ErrDecrypt):
		return errTampered
	}
	return err
}

// writeErr is the answer to a write that met err sealing or opening
// under key keyID: an erased subject stays erased.
func writeErr(keyID string, err error) error {
	if errors.Is(err, keyring.ErrKeyDestroyed) && coffer.ParseKeyID(keyID).Kind == coffer.KeySubject {
		return errSubjectErased
	}
	if errors.Is(err, envelope.ErrDecrypt) {
		return errTampered
	}
	return err
}

// Resealer is the keyring as RewrapRecord needs it.
type Resealer interface {
	opener
	// Reseal seals a value moved from an older version of keyID under the
	// newest one (counted as a rewrap).
	Reseal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
}

// RewrapRecord moves a record to the newest version cur of its key, for
// the rewrap job: every value (and the Seal) sealed under an older version
// is sealed again under cur, with the same AAD. A record of format 1 is
// moved to format 2 at once (revision 1, every value sealed again, a
// Seal made): upgraded in place. It reports whether anything changed.
//
// A record that fails its check is never resealed (that would bless the
// change): the error wraps ErrTampered. A value that does not open because
// its key or version ended comes back as the keyring's error; the job
// leaves such a record as it is.
func RewrapRecord(ctx context.Context, keys Resealer, r coffer.SealedRecord, cur uint32) (coffer.SealedRecord, bool, error) {
	if err := verify(ctx, keys, &r); err != nil {
		if errors.Is(err, errTampered) {
			return r, false, fmt.Errorf("vault: rewrap record %s/%s: %w", r.Collection, r.ID, ErrTampered)
		}
		return r, false, err
	}
	upgrade := r.Revision == 0
	next := r
	if upgrade {
		next.Revision = 1
	}
	next.Values = make(map[string][]byte, len(r.Values))
	moved := upgrade
	for f, env := range r.Values {
		if v, err := envelope.KeyVersion(env); !upgrade && err == nil && v >= cur {
			next.Values[f] = env
			continue
		}
		pt, err := keys.Open(ctx, r.KeyID, env, valueAAD(&r, f))
		if errors.Is(err, envelope.ErrDecrypt) {
			return r, false, fmt.Errorf("vault: rewrap record %s/%s: %w", r.Collection, r.ID, ErrTampered)
		}
		if err != nil {
			return r, false, err
		}
		ne, err := keys.Reseal(ctx, r.KeyID, pt, valueAAD(&next, f))
		clear(pt)
		if err != nil {
			return r, false, fmt.Errorf("vault: reseal a value: %w", err)
		}
		next.Values[f] = ne
		moved = true
	}
	if v, err := envelope.KeyVersion(next.Seal); upgrade || err != nil || v < cur {
		s, err := keys.Reseal(ctx, r.KeyID, nil, metaAAD(&next))
		if err != nil {
			return r, false, fmt.Errorf("vault: reseal a record's seal: %w", err)
		}
		next.Seal, moved = s, true
	}
	return next, moved, nil
}
