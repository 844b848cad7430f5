package vault

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/fieldtype"
	"github.com/cofferhq/coffer/internal/mask"
	"github.com/cofferhq/coffer/internal/policy"
)

// Store is the part of the store the vault uses. Methods return
// *coffer.Error with ENOTFOUND or ECONFLICT where the caller branches.
type Store interface {
	CollectionStore
	RecordStore
	IndexStore
}

// CollectionStore keeps the collections' schemas.
type CollectionStore interface {
	CreateCollection(ctx context.Context, c coffer.Collection) error
	Collection(ctx context.Context, name string) (coffer.Collection, error)
	Collections(ctx context.Context) ([]coffer.Collection, error)
}

// RecordStore keeps the sealed records and their index entries, written
// together.
type RecordStore interface {
	InsertRecord(ctx context.Context, r coffer.SealedRecord, idx []coffer.IndexEntry) error
	Record(ctx context.Context, collection, id string) (coffer.SealedRecord, error)
	Records(ctx context.Context, collection string, ids []string) ([]coffer.SealedRecord, error)
	UpdateRecord(ctx context.Context, r coffer.SealedRecord, idxFields []string, idx []coffer.IndexEntry) error
	DeleteRecord(ctx context.Context, collection, id string) error
	DeleteSubjectRecords(ctx context.Context, subject string) (int64, error)
}

// IndexStore answers the blind index: search and exact-match checks.
type IndexStore interface {
	SearchIndex(ctx context.Context, collection, field string, macs [][]byte, limit int) ([]string, error)
	// IndexHas reports whether record id has an index entry for field
	// with one of macs.
	IndexHas(ctx context.Context, collection, field, id string, macs [][]byte) (bool, error)
}

// Keys seals, opens and MACs under named, versioned data keys.
type Keys interface {
	Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, keyID string, env, aad []byte) ([]byte, error)
	MAC(ctx context.Context, keyID string, data []byte) (version uint32, mac []byte, err error)
	// MACAll is data's MAC under every active version, the newest first.
	MACAll(ctx context.Context, keyID string, data []byte) (version uint32, macs [][]byte, err error)
	Destroy(ctx context.Context, keyID string) error
	// CurrentVersion and Retire serve Reindex.
	CurrentVersion(ctx context.Context, keyID string) (uint32, error)
	Retire(ctx context.Context, keyID string, version uint32) error
}

// Policies gives the policy in force now (it may change between calls).
type Policies interface {
	Current() *policy.Policy
}

// Config holds the vault's dependencies.
type Config struct {
	Store    Store
	Keys     Keys
	Policies Policies
	Masker   *mask.Masker
	Rand     io.Reader
	Now      func() time.Time
	// MaxSearchLimit caps a search's limit (default 1000).
	MaxSearchLimit int
	// ReindexAfter: Reindex moves entries to a field's newest index key
	// version only once that version is this old, so that every node's
	// key cache knows it first (a node that did not would search only
	// the old version and miss moved entries). 0 moves at once: right for
	// a single node (SQLite); several nodes need the keyring's cache time
	// and a margin.
	ReindexAfter time.Duration
	// ShredAuditValues, if set, makes every searched value the audit log
	// names unlinkable (it destroys the audit value keys' versions in use
	// and starts new ones): EraseSubject calls it once the caller may
	// erase and before anything is destroyed, since an erased subject's
	// values may have been searched for.
	ShredAuditValues func(ctx context.Context) error
}

// Vault runs the record use cases.
type Vault struct {
	c Config
	// schemas caches collection schemas: a collection cannot change once
	// created, so a cached schema is never stale (a collection made on
	// another node is simply a miss).
	mu      sync.RWMutex
	schemas map[string]coffer.Collection
}

// New returns a Vault.
func New(c Config) *Vault {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxSearchLimit <= 0 {
		c.MaxSearchLimit = 1000
	}
	return &Vault{c: c, schemas: map[string]coffer.Collection{}}
}

// Caller is who asks and from where; Note collects what the call did.
type Caller = coffer.Caller

// CollectionSpec is the body of a create-collection request.
type CollectionSpec struct {
	Name      string         `json:"name"`
	Fields    []coffer.Field `json:"fields"`
	Retention string         `json:"retention,omitempty"`
}

func collectionResource(name string) string { return "collections/" + name }

// decide asks the policy; it records the outcome in the note and returns a
// 403 (or, with hide, a 404) error when denied.
func (v *Vault) decide(c Caller, action, resource string, attrs policy.Input, hide bool) (policy.Decision, error) {
	in := attrs
	in.Principal, in.Action, in.Resource = c.Principal, action, resource
	if in.Time.IsZero() {
		in.Time = v.c.Now()
	}
	in.IP = c.IP
	d := v.c.Policies.Current().Decide(in)
	if !d.Allowed {
		c.Note.Deny(d.Reason)
		if hide {
			return d, coffer.Errorf(coffer.ENOTFOUND, "record not found")
		}
		return d, coffer.Errorf(coffer.EFORBIDDEN, "not allowed to %s %s", action, resource)
	}
	c.Note.Allow(d.Rule)
	c.Note.Decide(coffer.Decided{Action: action, Resource: resource, Owner: in.Owner, Subject: in.Subject, Collection: in.Collection, ID: in.ID})
	return d, nil
}

// CreateCollection validates and stores a collection schema.
func (v *Vault) CreateCollection(ctx context.Context, c Caller, spec CollectionSpec) (coffer.Collection, error) {
	res := collectionResource(spec.Name)
	c.Note.Target("admin", res)
	if !ValidName(spec.Name) {
		c.Note.Resource = "collections"
		return coffer.Collection{}, coffer.Errorf(coffer.EINVALID, "collection name must match [a-z][a-z0-9_]{0,62}")
	}
	if _, err := v.decide(c, "admin", res, policy.Input{}, false); err != nil {
		return coffer.Collection{}, err
	}
	col := coffer.Collection{Name: spec.Name, CreatedAt: v.c.Now().UTC()}
	var problems []string
	if len(spec.Fields) == 0 {
		problems = append(problems, "fields: at least one field is required")
	}
	if len(spec.Fields) > 256 {
		problems = append(problems, "fields: at most 256 fields")
	}
	seen := map[string]bool{}
	for i, f := range spec.Fields {
		switch {
		case !ValidName(f.Name):
			problems = append(problems, fmt.Sprintf("fields[%d].name must match [a-z][a-z0-9_]{0,62}", i))
		case seen[f.Name]:
			problems = append(problems, fmt.Sprintf("fields[%d].name %q is repeated", i, f.Name))
		}
		seen[f.Name] = true
		if !fieldtype.Valid(f.Type) {
			problems = append(problems, fmt.Sprintf("fields[%d].type must be one of string email phone card_number ssn date integer", i))
		}
		if f.Mask != "" {
			if err := mask.ValidName(f.Mask); err != nil {
				problems = append(problems, fmt.Sprintf("fields[%d].mask: %v", i, err))
			}
		}
	}
	if spec.Retention != "" {
		d, err := time.ParseDuration(spec.Retention)
		if err != nil || d < time.Minute || d > 100*365*24*time.Hour {
			problems = append(problems, "retention must be a Go duration between 1m and 100 years, like \"720h\"")
		}
		col.Retention = d
	}
	if len(problems) > 0 {
		return coffer.Collection{}, &coffer.Error{Code: coffer.EINVALID, Message: strings.Join(problems, "; "), Problems: problems}
	}
	col.Fields = spec.Fields
	if err := v.c.Store.CreateCollection(ctx, col); err != nil {
		return coffer.Collection{}, err
	}
	c.Note.Touch(coffer.CollectionTarget(col.Name))
	return col, nil
}

// Collection returns a collection's schema to a caller who may read it.
func (v *Vault) Collection(ctx context.Context, c Caller, name string) (coffer.Collection, error) {
	res := collectionResource(name)
	c.Note.Target("read", res)
	if _, err := v.decide(c, "read", res, policy.Input{}, false); err != nil {
		return coffer.Collection{}, err
	}
	return v.loadCollection(ctx, c, name)
}

// Collections lists the collections (action admin on collections/*).
func (v *Vault) Collections(ctx context.Context, c Caller) ([]coffer.Collection, error) {
	c.Note.Target("admin", "collections/*")
	if _, err := v.decide(c, "admin", "collections/*", policy.Input{}, false); err != nil {
		return nil, err
	}
	return v.c.Store.Collections(ctx)
}

// NewRecord is the body of a create-record request.
type NewRecord struct {
	Owner   string                     `json:"owner"`
	Subject string                     `json:"subject"`
	Data    map[string]json.RawMessage `json:"data"`
	// Canary plants a decoy record: it looks real, no legitimate reader
	// touches it, and any read or search hit of it raises data.canary.
	// Planting one needs admin on the collection.
	Canary bool `json:"canary,omitempty"`
}

func keyIDFor(collection, subject string) string {
	return coffer.RecordKey(collection, subject).String()
}

func indexKeyID(collection, field string) string {
	return coffer.KeyID{Kind: coffer.KeyIndex, Name: collection + "/" + field}.String()
}

// PseudonymKeyID names the key of the hash mask's pseudonyms of one field:
// one per collection and field, so that pseudonyms link nothing across
// fields, and rotatable (pseudonyms change with it).
func PseudonymKeyID(collection, field string) string {
	return coffer.KeyID{Kind: coffer.KeyPseudonym, Name: collection + "/" + field}.String()
}

// pseudonym is the hash mask of value pt of collection's field.
func (v *Vault) pseudonym(ctx context.Context, collection, field string, pt []byte) (string, error) {
	_, m, err := v.c.Keys.MAC(ctx, PseudonymKeyID(collection, field), mask.PseudonymInput(string(pt)))
	if err != nil {
		return "", fmt.Errorf("vault: pseudonym: %w", err)
	}
	return mask.Pseudonym(m), nil
}

func validAttr(s string) bool {
	return len(s) <= 256 && !strings.ContainsRune(s, 0) && strings.ToValidUTF8(s, "") == s
}

// ForgetSchemas empties the collection schema cache (another node
// changed a collection): the next use of each reads the store.
func (v *Vault) ForgetSchemas() {
	v.mu.Lock()
	clear(v.schemas)
	v.mu.Unlock()
}

// loadCollection fetches a collection (from the cache when it can), noting
// a missing one.
func (v *Vault) loadCollection(ctx context.Context, c Caller, name string) (coffer.Collection, error) {
	v.mu.RLock()
	col, ok := v.schemas[name]
	v.mu.RUnlock()
	if ok {
		return col, nil
	}
	col, err := v.c.Store.Collection(ctx, name)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		c.Note.Missing = true
	}
	if err != nil {
		return col, err
	}
	v.mu.Lock()
	if len(v.schemas) < 10000 {
		v.schemas[name] = col
	}
	v.mu.Unlock()
	return col, nil
}

// CreateRecord validates, seals, indexes and stores a new record.
func (v *Vault) CreateRecord(ctx context.Context, c Caller, collection string, nr NewRecord) (string, error) {
	res := collectionResource(collection)
	c.Note.Target("create", res)
	if !validAttr(nr.Owner) || !validAttr(nr.Subject) {
		return "", coffer.Errorf(coffer.EINVALID, "owner and subject must be UTF-8 strings of at most 256 bytes")
	}
	id, err := uuid.NewV7FromReader(v.c.Rand)
	if err != nil {
		return "", fmt.Errorf("vault: record id: %w", err)
	}
	rid := id.String()
	if _, err := v.decide(c, "create", res, policy.Input{Owner: nr.Owner, Subject: nr.Subject, Collection: collection, ID: rid}, false); err != nil {
		return "", err
	}
	if nr.Canary {
		if _, err := v.decide(c, "admin", res, policy.Input{Collection: collection}, false); err != nil {
			return "", err
		}
	}
	col, err := v.loadCollection(ctx, c, collection)
	if err != nil {
		return "", err
	}
	if len(nr.Data) == 0 {
		return "", coffer.Errorf(coffer.EINVALID, "data must hold at least one field")
	}
	now := v.c.Now().UTC()
	rec := coffer.SealedRecord{
		ID: rid, Collection: collection, Owner: nr.Owner, Subject: nr.Subject,
		CreatedAt: now, UpdatedAt: now, KeyID: keyIDFor(collection, nr.Subject),
		Values: make(map[string][]byte, len(nr.Data)), Canary: nr.Canary, Revision: 1,
	}
	if col.Retention > 0 {
		exp := now.Add(col.Retention)
		rec.ExpiresAt = &exp
	}
	pts, idx, fields, err := v.prepareFields(ctx, col, nr.Data)
	if err != nil {
		return "", err
	}
	err = SealRecord(ctx, v.c.Keys, &rec, pts)
	clearAll(pts)
	if err != nil {
		return "", writeErr(rec.KeyID, err)
	}
	c.Note.Fields, c.Note.Count = fields, 1
	if err := v.c.Store.InsertRecord(ctx, rec, idx); err != nil {
		return "", err
	}
	c.Note.Touch(coffer.RecordTarget(collection, rid))
	return rid, nil
}

// prepareFields validates every field of data against the schema (so a
// bad request stores nothing) and returns each value's stored form, to be
// sealed (SealRecord), the blind-index entries of the searchable ones and
// the field names, sorted.
func (v *Vault) prepareFields(ctx context.Context, col coffer.Collection, data map[string]json.RawMessage) (map[string][]byte, []coffer.IndexEntry, []string, error) {
	names := make([]string, 0, len(data))
	for name := range data {
		names = append(names, name)
	}
	sort.Strings(names)
	type norm struct {
		f               coffer.Field
		stored, indexed string
	}
	vals := make([]norm, 0, len(names))
	var problems []string
	for _, name := range names {
		f, ok := col.Field(name)
		if !ok {
			problems = append(problems, fmt.Sprintf("field %q is not in the schema of collection %q", truncName(name), col.Name))
			continue
		}
		s, ix, err := fieldtype.Normalize(f, data[name])
		if err != nil {
			problems = append(problems, coffer.ErrorMessage(err))
			continue
		}
		vals = append(vals, norm{f, s, ix})
	}
	if len(problems) > 0 {
		return nil, nil, nil, &coffer.Error{Code: coffer.EINVALID, Message: strings.Join(problems, "; "), Problems: problems}
	}
	var idx []coffer.IndexEntry
	pts := make(map[string][]byte, len(vals))
	for _, n := range vals {
		pts[n.f.Name] = []byte(n.stored)
		if n.f.Searchable {
			ver, mac, err := v.c.Keys.MAC(ctx, indexKeyID(col.Name, n.f.Name), []byte(n.indexed))
			if err != nil {
				return nil, nil, nil, fmt.Errorf("vault: index field: %w", err)
			}
			idx = append(idx, coffer.IndexEntry{Field: n.f.Name, Version: ver, MAC: mac})
		}
	}
	return pts, idx, names, nil
}

// clearAll zeroes the plaintexts of m.
func clearAll(m map[string][]byte) {
	for _, pt := range m {
		clear(pt)
	}
}

// truncName keeps an unknown field name short in an error message. Field
// names are schema, not values, but an attacker controls this one.
func truncName(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// View is a record shaped for one caller.
type View struct {
	ID        string         `json:"id"`
	Owner     string         `json:"owner"`
	Subject   string         `json:"subject,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	ExpiresAt *time.Time     `json:"expires_at,omitempty"`
	Data      map[string]any `json:"data"`
}

// loadRecord fetches a live record; expired or missing records are 404.
func (v *Vault) loadRecord(ctx context.Context, c Caller, collection, id string) (coffer.SealedRecord, error) {
	r, err := v.c.Store.Record(ctx, collection, id)
	if err == nil && r.ExpiresAt != nil && !v.c.Now().Before(*r.ExpiresAt) {
		err = coffer.Errorf(coffer.ENOTFOUND, "record not found")
	}
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		c.Note.Missing = true
		return r, coffer.Errorf(coffer.ENOTFOUND, "record not found")
	}
	if r.Canary {
		c.Note.Canary = true
	}
	if err == nil {
		c.Note.Touch(coffer.RecordTarget(collection, id))
	}
	return r, err
}

// authorizeRecord decides action on one stored record: when the decision
// depends on the record (an owner or subject rule) a denial is a 404, so a
// caller cannot learn that a record it may not see exists. Once allowed,
// the record is checked (verify) before anything is done with it — but a
// delete the decision allowed without reading the record goes ahead
// whatever its state, so that a damaged record can be removed.
func (v *Vault) authorizeRecord(ctx context.Context, c Caller, action, collection, id string) (coffer.SealedRecord, policy.Decision, error) {
	res := collectionResource(collection)
	c.Note.Target(action, res)
	p := v.c.Policies.Current()
	perRecord := p.NeedsResource(c.Principal, action, res)
	var (
		r   coffer.SealedRecord
		d   policy.Decision
		err error
	)
	if perRecord {
		if r, err = v.loadRecord(ctx, c, collection, id); err != nil {
			return r, d, err
		}
		d, err = v.decide(c, action, res, policy.Input{Owner: r.Owner, Subject: r.Subject, Collection: collection, ID: id}, true)
	} else if d, err = v.decide(c, action, res, policy.Input{Collection: collection, ID: id}, false); err == nil {
		r, err = v.loadRecord(ctx, c, collection, id)
	}
	if err != nil || (action == "delete" && !perRecord) {
		return r, d, err
	}
	if err := verify(ctx, v.c.Keys, &r); err != nil {
		if errors.Is(err, errTampered) {
			tampered(c, r.ID)
		}
		if action == "update" {
			return r, d, writeErr(r.KeyID, err)
		}
		return r, d, readErr(err)
	}
	return r, d, nil
}

// GetRecord returns one record shaped by the caller's field views.
func (v *Vault) GetRecord(ctx context.Context, c Caller, collection, id string) (View, error) {
	r, d, err := v.authorizeRecord(ctx, c, "read", collection, id)
	if err != nil {
		return View{}, err
	}
	col, err := v.loadCollection(ctx, c, collection)
	if err != nil {
		return View{}, err
	}
	view, err := v.shape(ctx, col, r, d)
	if errors.Is(err, errTampered) {
		tampered(c, r.ID)
	}
	if err != nil {
		return View{}, err
	}
	c.Note.Fields, c.Note.Count, c.Note.Values = sortedKeys(view.Data), 1, len(view.Data)
	return view, nil
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// shape opens the fields the decision shows and masks the masked ones;
// denied fields are never decrypted.
func (v *Vault) shape(ctx context.Context, col coffer.Collection, r coffer.SealedRecord, d policy.Decision) (View, error) {
	out := View{ID: r.ID, Owner: r.Owner, Subject: r.Subject, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		ExpiresAt: r.ExpiresAt, Data: make(map[string]any, len(r.Values))}
	for name, env := range r.Values {
		f, ok := col.Field(name)
		if !ok {
			continue
		}
		view := d.View(name)
		if view == policy.Deny {
			continue
		}
		pt, err := v.c.Keys.Open(ctx, r.KeyID, env, valueAAD(&r, name))
		if err != nil {
			return View{}, fmt.Errorf("vault: open field of record: %w", readErr(err))
		}
		if view == policy.Masked {
			m := f.Mask
			if m == "" {
				m = mask.Default(f.Type)
			}
			if m == mask.Hash {
				p, err := v.pseudonym(ctx, col.Name, name, pt)
				clear(pt)
				if err != nil {
					return View{}, err
				}
				out.Data[name] = p
				continue
			}
			out.Data[name] = v.c.Masker.Mask(m, string(pt))
			continue
		}
		out.Data[name] = fieldtype.Encode(f, string(pt))
	}
	return out, nil
}

// Patch is the body of a PATCH: the fields to replace.
type Patch struct {
	Data map[string]json.RawMessage `json:"data"`
}

// updateAttempts bounds how often an update is made again after a
// concurrent update of the same record went first.
const updateAttempts = 4

// UpdateRecord replaces the given fields of a record. The record moves to
// its next revision: every value is sealed again under it (the patched
// ones from the request, the others as they were), with a new Seal, and
// it is stored only if no other update went first (else it is made again
// from the record as that one left it).
func (v *Vault) UpdateRecord(ctx context.Context, c Caller, collection, id string, p Patch) error {
	for attempt := 1; ; attempt++ {
		err := v.updateOnce(ctx, c, collection, id, p)
		if attempt == updateAttempts || !errors.Is(err, errUpdateRaced) {
			return err
		}
	}
}

// errUpdateRaced: another update of the record was stored first.
var errUpdateRaced = errors.New("vault: the record was updated meanwhile")

func (v *Vault) updateOnce(ctx context.Context, c Caller, collection, id string, p Patch) error {
	r, _, err := v.authorizeRecord(ctx, c, "update", collection, id)
	if err != nil {
		return err
	}
	if len(p.Data) == 0 {
		return coffer.Errorf(coffer.EINVALID, "data must hold at least one field")
	}
	col, err := v.loadCollection(ctx, c, collection)
	if err != nil {
		return err
	}
	next := r
	next.Values = make(map[string][]byte, len(r.Values)+len(p.Data))
	next.Revision = r.Revision + 1
	next.UpdatedAt = v.c.Now().UTC()
	pts, idx, fields, err := v.prepareFields(ctx, col, p.Data)
	defer clearAll(pts)
	if err != nil {
		return err
	}
	for name, env := range r.Values {
		if _, patched := pts[name]; patched {
			continue
		}
		pt, err := v.c.Keys.Open(ctx, r.KeyID, env, valueAAD(&r, name))
		if errors.Is(err, envelope.ErrDecrypt) {
			tampered(c, r.ID)
		}
		if err != nil {
			return fmt.Errorf("vault: open a kept field: %w", writeErr(r.KeyID, err))
		}
		pts[name] = pt // kept as it was
	}
	if err := SealRecord(ctx, v.c.Keys, &next, pts); err != nil {
		return writeErr(next.KeyID, err)
	}
	var idxFields []string
	for _, name := range fields {
		if f, _ := col.Field(name); f.Searchable {
			idxFields = append(idxFields, name)
		}
	}
	c.Note.Fields, c.Note.Count = fields, 1
	err = v.c.Store.UpdateRecord(ctx, next, idxFields, idx)
	if coffer.ErrorCode(err) == coffer.ECONFLICT {
		return &coffer.Error{Code: coffer.ECONFLICT, Message: coffer.ErrorMessage(err), Cause: errUpdateRaced}
	}
	return err
}

// DeleteRecord deletes a record.
func (v *Vault) DeleteRecord(ctx context.Context, c Caller, collection, id string) error {
	if _, _, err := v.authorizeRecord(ctx, c, "delete", collection, id); err != nil {
		return err
	}
	c.Note.Count = 1
	return v.c.Store.DeleteRecord(ctx, collection, id)
}

// Search is the body of a search request.
type Search struct {
	Where map[string]json.RawMessage `json:"where"`
	Limit int                        `json:"limit"`
}

// SearchRecords finds records by exact match on searchable fields through
// their blind indexes, without decrypting anything to match, and shapes each
// hit like a GET. Records the caller may not see are left out.
func (v *Vault) SearchRecords(ctx context.Context, c Caller, collection string, s Search) ([]View, error) {
	res := collectionResource(collection)
	c.Note.Target("search", res)
	p := v.c.Policies.Current()
	perRecord := p.NeedsResource(c.Principal, "search", res)
	var d policy.Decision
	if !perRecord {
		var err error
		if d, err = v.decide(c, "search", res, policy.Input{Collection: collection}, false); err != nil {
			return nil, err
		}
	}
	col, err := v.loadCollection(ctx, c, collection)
	if err != nil {
		return nil, err
	}
	if len(s.Where) == 0 {
		return nil, coffer.Errorf(coffer.EINVALID, "where must name at least one searchable field")
	}
	limit := s.Limit
	if limit <= 0 {
		limit = 100
	}
	if limit > v.c.MaxSearchLimit {
		return nil, coffer.Errorf(coffer.EINVALID, "limit must be at most %d", v.c.MaxSearchLimit)
	}
	names := make([]string, 0, len(s.Where))
	for name := range s.Where {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if f, ok := col.Field(name); !ok || !f.Searchable {
			return nil, coffer.Errorf(coffer.EINVALID, "field %q is not a searchable field of collection %q", truncName(name), collection)
		}
	}
	if err := searchableBy(c, p, d, perRecord, res, names); err != nil {
		return nil, err
	}
	var ids []string
	terms := make(map[string]string, len(names))
	termMACs := make(map[string][][]byte, len(names))
	for i, name := range names {
		f, _ := col.Field(name)
		_, ix, err := fieldtype.Normalize(f, s.Where[name])
		if err != nil {
			return nil, err
		}
		terms[name] = ix
		// Every live index key version: after a rotation the reindex job
		// moves entries to the newest one in the background. And the form
		// a value was indexed in before text was normalised, where it
		// differs, until that reindex has filed the entries anew.
		_, macs, err := v.c.Keys.MACAll(ctx, indexKeyID(collection, name), []byte(ix))
		if err != nil {
			return nil, fmt.Errorf("vault: index term: %w", err)
		}
		if old := fieldtype.LegacyIndexForm(f, s.Where[name]); old != "" && old != ix {
			_, more, err := v.c.Keys.MACAll(ctx, indexKeyID(collection, name), []byte(old))
			if err != nil {
				return nil, fmt.Errorf("vault: index term: %w", err)
			}
			macs = append(macs, more...)
		}
		termMACs[name] = macs
		// The audit names the term under an audit-only key, bound to the
		// caller: never the index MAC, which a database copy holds.
		vh, err := audit.ValueHMAC(ctx, v.c.Keys, audit.SearchValueKeyID(collection, name), c.PrincipalID(), []byte(ix))
		if err != nil {
			return nil, fmt.Errorf("vault: audit value: %w", err)
		}
		c.Note.ValueHMACs = append(c.Note.ValueHMACs, vh)
		// One field and no per-record filter: the index gives exactly the
		// page. Otherwise fetch more candidates for the intersection and
		// the per-record decisions to thin out.
		want := limit
		if len(names) > 1 || perRecord {
			want = min(max(limit*4, 100), 10*v.c.MaxSearchLimit)
		}
		got, err := v.c.Store.SearchIndex(ctx, collection, name, macs, want)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			ids = got
		} else {
			ids = intersect(ids, got)
		}
	}
	c.Note.Fields = names
	recs, err := v.c.Store.Records(ctx, collection, ids)
	if err != nil {
		return nil, err
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	out := make([]View, 0, min(len(recs), limit))
	now := v.c.Now()
	allowedAny := !perRecord
	for _, r := range recs {
		if len(out) == limit {
			break
		}
		if r.ExpiresAt != nil && !now.Before(*r.ExpiresAt) {
			continue
		}
		rd := d
		if perRecord {
			rd = p.Decide(policy.Input{Principal: c.Principal, Action: "search", Resource: res,
				Owner: r.Owner, Subject: r.Subject, Collection: collection, ID: r.ID, Time: now, IP: c.IP})
			if !rd.Allowed || !allPlain(rd, names) {
				// A record whose searched values the caller may not see
				// in plain is never a hit, whatever they are: otherwise
				// the answer would tell a right guess from a wrong one.
				continue
			}
			allowedAny = true
			c.Note.Allow(rd.Rule)
		}
		switch err := v.checkHit(ctx, col, &r, terms, termMACs); {
		case errors.Is(err, errChanged):
			continue // updated since the index named it: no longer a hit
		case errors.Is(err, errTampered):
			// A planted index row, or a record changed outside Coffer:
			// never a hit, and a security event.
			tampered(c, r.ID)
			continue
		case errors.Is(err, keyring.ErrKeyDestroyed):
			continue // its data subject was erased: gone for every purpose
		case err != nil:
			return nil, readErr(err)
		}
		if r.Canary {
			c.Note.Canary = true
		}
		view, err := v.shape(ctx, col, r, rd)
		if errors.Is(err, errTampered) {
			tampered(c, r.ID)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, view)
		c.Note.Values += len(view.Data)
		c.Note.Touch(coffer.RecordTarget(collection, r.ID))
	}
	if perRecord && !allowedAny {
		// Nothing visible: answer like an empty search, and note the denial.
		c.Note.Deny("no matching record the caller may see")
	}
	c.Note.Count = len(out)
	if len(out) == 0 && len(ids) == 0 {
		c.Note.Missing = true
	}
	return out, nil
}

// errChanged: a search hit was updated after the index named it.
var errChanged = errors.New("vault: the record changed since the index named it")

// checkHit verifies a record the blind index named for a search: its data
// authenticates (verify), and each searched field holds the value searched
// for — the index is only a hint, and a row planted in it must pull no
// other record in. It returns errTampered when not, errChanged when the
// record was updated meanwhile (its index no longer names it, or its
// revision moved on), and the keyring's error when a value does not open.
func (v *Vault) checkHit(ctx context.Context, col coffer.Collection, r *coffer.SealedRecord, terms map[string]string, macs map[string][][]byte) error {
	if err := verify(ctx, v.c.Keys, r); err != nil {
		return err
	}
	for name, term := range terms {
		f, _ := col.Field(name)
		env, ok := r.Values[name]
		if !ok {
			return errTampered
		}
		indexed, err := v.storedIndexForm(ctx, *r, f, env)
		switch {
		case errors.Is(err, envelope.ErrDecrypt):
			return errTampered
		case errors.Is(err, errStoredInvalid):
			return errChanged // valid when written, not under today's rules: not this term
		case err != nil:
			return err
		}
		if subtle.ConstantTimeCompare([]byte(indexed), []byte(term)) != 1 {
			return v.recheck(ctx, r, name, macs[name])
		}
	}
	return nil
}

// recheck tells a planted index row from an update that raced the search:
// the value of field does not match the term, so either the record was
// updated since the index was read (the index no longer names it for the
// term, or the record's revision moved on: errChanged) or the index names
// a record whose value it was never made from (errTampered).
func (v *Vault) recheck(ctx context.Context, r *coffer.SealedRecord, field string, macs [][]byte) error {
	has, err := v.c.Store.IndexHas(ctx, r.Collection, field, r.ID, macs)
	if err != nil {
		return err
	}
	if !has {
		return errChanged
	}
	now, err := v.c.Store.Record(ctx, r.Collection, r.ID)
	if err != nil || now.Revision != r.Revision {
		return errChanged
	}
	return errTampered
}

// searchableBy refuses (403, naming the field) a search by a field the
// caller may not see in plain: one hit or none would confirm a guess of a
// value it may not see (a masked view shows only what the mask shows, so
// it may not search either). With per-record decisions the best view any
// rule may give decides here, and each record's own decision later.
func searchableBy(c Caller, p *policy.Policy, d policy.Decision, perRecord bool, res string, names []string) error {
	for _, name := range names {
		view := d.View(name)
		if perRecord {
			view = p.BestView(c.Principal, "search", res, name)
		}
		if view != policy.Plain {
			c.Note.Deny("the caller's view of field " + name + " is " + view.String())
			return coffer.Errorf(coffer.EFORBIDDEN, "not allowed to search by field %q: the caller may not see it in plain", name)
		}
	}
	return nil
}

// allPlain reports whether d shows every named field plain.
func allPlain(d policy.Decision, names []string) bool {
	for _, name := range names {
		if d.View(name) != policy.Plain {
			return false
		}
	}
	return true
}

func intersect(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, x := range b {
		in[x] = true
	}
	out := a[:0]
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// EraseSubject crypto-shreds a data subject: it destroys the subject's data
// key first (so every copy of the values, backups included, becomes
// unreadable even if the delete below is interrupted), then deletes the
// records.
func (v *Vault) EraseSubject(ctx context.Context, c Caller, subject string) (int64, error) {
	c.Note.Target("delete", "subjects")
	if subject == "" || !validAttr(subject) {
		return 0, coffer.Errorf(coffer.EINVALID, "subject must be a UTF-8 string of 1 to 256 bytes")
	}
	if _, err := v.decide(c, "delete", "subjects", policy.Input{Subject: subject}, false); err != nil {
		return 0, err
	}
	if v.c.ShredAuditValues != nil {
		// First, so that a failure leaves nothing half erased to retry.
		if err := v.c.ShredAuditValues(ctx); err != nil {
			return 0, fmt.Errorf("vault: shred audit value keys: %w", err)
		}
	}
	if err := v.c.Keys.Destroy(ctx, keyIDFor("", subject)); err != nil {
		return 0, fmt.Errorf("vault: destroy subject key: %w", err)
	}
	c.Note.Touch(coffer.SubjectTarget(subject))
	n, err := v.c.Store.DeleteSubjectRecords(ctx, subject)
	if err != nil {
		return 0, err
	}
	c.Note.Count = int(n)
	return n, nil
}

// ErrNoPolicy is returned when no policy is loaded.
var ErrNoPolicy = errors.New("vault: no policy loaded")
