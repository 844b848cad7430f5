package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// collectionSchema is the JSON kept in collections.schema_json.
type collectionSchema struct {
	Fields []coffer.Field `json:"fields"`
}

// CreateCollection stores a new collection; ECONFLICT if the name is taken.
func (db *DB) CreateCollection(ctx context.Context, c coffer.Collection) error {
	b, err := json.Marshal(collectionSchema{Fields: c.Fields})
	if err != nil {
		return fmt.Errorf("store: encode schema: %w", err)
	}
	_, err = db.write.exec(ctx,
		`INSERT INTO collections (name, schema_json, retention_s, created_at) VALUES ($1, $2, $3, $4)`,
		c.Name, string(b), int64(c.Retention/time.Second), micros(c.CreatedAt))
	if errors.Is(err, ErrConflict) {
		return &coffer.Error{Code: coffer.ECONFLICT, Message: "collection already exists", Cause: err}
	}
	if err != nil {
		return fmt.Errorf("store: create collection: %w", err)
	}
	return nil
}

// Collection returns the named collection; ENOTFOUND if there is none.
func (db *DB) Collection(ctx context.Context, name string) (coffer.Collection, error) {
	var (
		schema     string
		retS, crAt int64
	)
	err := db.read.queryRow(ctx,
		`SELECT schema_json, retention_s, created_at FROM collections WHERE name = $1`, name).
		Scan(&schema, &retS, &crAt)
	if errors.Is(err, ErrNotFound) {
		return coffer.Collection{}, notFound("collection")
	}
	if err != nil {
		return coffer.Collection{}, fmt.Errorf("store: collection: %w", err)
	}
	return decodeCollection(name, schema, retS, crAt)
}

func decodeCollection(name, schema string, retS, crAt int64) (coffer.Collection, error) {
	var s collectionSchema
	if err := json.Unmarshal([]byte(schema), &s); err != nil {
		return coffer.Collection{}, fmt.Errorf("store: decode schema of a collection: %w", err)
	}
	return coffer.Collection{
		Name: name, Fields: s.Fields,
		Retention: time.Duration(retS) * time.Second,
		CreatedAt: fromMicros(crAt),
	}, nil
}

// Collections lists every collection by name.
func (db *DB) Collections(ctx context.Context) ([]coffer.Collection, error) {
	rs, err := db.read.query(ctx, `SELECT name, schema_json, retention_s, created_at FROM collections ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: collections: %w", err)
	}
	defer rs.Close()
	var out []coffer.Collection
	for rs.Next() {
		var (
			name, schema string
			retS, crAt   int64
		)
		if err := rs.Scan(&name, &schema, &retS, &crAt); err != nil {
			return nil, fmt.Errorf("store: collections: %w", err)
		}
		c, err := decodeCollection(name, schema, retS, crAt)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rs.Err()
}

func encodeValues(v map[string][]byte) ([]byte, error) {
	b, err := json.Marshal(v) // []byte values encode as base64
	if err != nil {
		return nil, fmt.Errorf("store: encode values: %w", err)
	}
	return b, nil
}

func nullTime(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(*t), Valid: true}
}

// nullBytes stores an empty byte slice as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// revision is a record revision as stored.
func revision(r uint64) int64 {
	return int64(min(r, math.MaxInt64)) // #nosec G115 -- clamped to the int64 range
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// InsertRecord stores a sealed record and its blind-index entries in one
// transaction: either both are stored or neither is.
func (db *DB) InsertRecord(ctx context.Context, r coffer.SealedRecord, idx []coffer.IndexEntry) error {
	vals, err := encodeValues(r.Values)
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(q querier) error {
		_, err := q.exec(ctx, `INSERT INTO records
			(collection, id, owner, subject, key_id, values_blob, canary, created_at, updated_at, expires_at, revision, meta_seal)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			r.Collection, r.ID, r.Owner, r.Subject, r.KeyID, vals, b2i(r.Canary),
			micros(r.CreatedAt), micros(r.UpdatedAt), nullTime(r.ExpiresAt), revision(r.Revision), nullBytes(r.Seal))
		if errors.Is(err, ErrConflict) {
			return &coffer.Error{Code: coffer.ECONFLICT, Message: "record already exists", Cause: err}
		}
		if err != nil {
			return fmt.Errorf("store: insert record: %w", err)
		}
		return insertIndex(ctx, q, r.Collection, r.ID, idx)
	})
}

func insertIndex(ctx context.Context, q querier, collection, id string, idx []coffer.IndexEntry) error {
	for _, e := range idx {
		if _, err := q.exec(ctx, `INSERT INTO record_index (collection, field, mac, record_id, version)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
			collection, e.Field, e.MAC, id, int64(e.Version)); err != nil {
			return fmt.Errorf("store: insert index entry: %w", err)
		}
	}
	return nil
}

const recordCols = `collection, id, owner, subject, key_id, values_blob, canary, created_at, updated_at, expires_at, revision, meta_seal`

func scanRecord(s interface{ Scan(...any) error }) (coffer.SealedRecord, error) {
	var (
		r          coffer.SealedRecord
		vals       []byte
		canary     int64
		crAt, upAt int64
		exp        sql.NullInt64
		rev        int64
	)
	if err := s.Scan(&r.Collection, &r.ID, &r.Owner, &r.Subject, &r.KeyID, &vals, &canary, &crAt, &upAt, &exp, &rev, &r.Seal); err != nil {
		return r, err
	}
	r.Revision = uint64(max(rev, 0)) // #nosec G115 -- clamped to non-negative
	if err := json.Unmarshal(vals, &r.Values); err != nil {
		return r, fmt.Errorf("store: decode sealed values: %w", err)
	}
	r.Canary = canary != 0
	r.CreatedAt, r.UpdatedAt = fromMicros(crAt), fromMicros(upAt)
	if exp.Valid {
		t := fromMicros(exp.Int64)
		r.ExpiresAt = &t
	}
	return r, nil
}

// Record returns one sealed record; ENOTFOUND if there is none.
func (db *DB) Record(ctx context.Context, collection, id string) (coffer.SealedRecord, error) {
	r, err := scanRecord(db.read.queryRow(ctx,
		`SELECT `+recordCols+` FROM records WHERE collection = $1 AND id = $2`, collection, id))
	if errors.Is(err, ErrNotFound) {
		return r, notFound("record")
	}
	if err != nil {
		return r, fmt.Errorf("store: record: %w", err)
	}
	return r, nil
}

// Records returns the sealed records with the given ids, in no set order;
// ids that do not exist are left out. One query per 256 ids.
func (db *DB) Records(ctx context.Context, collection string, ids []string) ([]coffer.SealedRecord, error) {
	out := make([]coffer.SealedRecord, 0, len(ids))
	per := db.rowsPerInsert(1)
	for start := 0; start < len(ids); start += per {
		chunk := ids[start:min(start+per, len(ids))]
		var sb strings.Builder
		args := make([]any, 0, len(chunk)+1)
		args = append(args, collection)
		sb.WriteString(`SELECT ` + recordCols + ` FROM records WHERE collection = $1 AND id IN (`)
		for i, id := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			// Only placeholders are written into the statement.
			sb.WriteString("$" + strconv.Itoa(i+2))
			args = append(args, id)
		}
		sb.WriteByte(')')
		rs, err := db.read.query(ctx, sb.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("store: records: %w", err)
		}
		for rs.Next() {
			r, err := scanRecord(rs)
			if err != nil {
				rs.Close()
				return nil, fmt.Errorf("store: records: %w", err)
			}
			out = append(out, r)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("store: records: %w", err)
		}
	}
	return out, nil
}

// UpdateRecord replaces a record's sealed values, owner, update time,
// revision and seal, and replaces the index entries of the fields named in
// idxFields with idx, in one transaction — only if the stored record is
// still at revision r.Revision-1, the one the update was made from
// (compare-and-swap: a concurrent update of the record wins, and this one
// is ECONFLICT, to be made again from the new revision). ENOTFOUND if the
// record is gone.
func (db *DB) UpdateRecord(ctx context.Context, r coffer.SealedRecord, idxFields []string, idx []coffer.IndexEntry) error {
	vals, err := encodeValues(r.Values)
	if err != nil {
		return err
	}
	if r.Revision == 0 {
		return errors.New("store: update record: an update makes revision 1 or more")
	}
	return db.inTx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `UPDATE records SET values_blob = $1, owner = $2, updated_at = $3, key_id = $4, revision = $5, meta_seal = $6
			WHERE collection = $7 AND id = $8 AND revision = $9`,
			vals, r.Owner, micros(r.UpdatedAt), r.KeyID, revision(r.Revision), nullBytes(r.Seal), r.Collection, r.ID, revision(r.Revision-1))
		if err != nil {
			return fmt.Errorf("store: update record: %w", err)
		}
		if n == 0 {
			var one int
			err := q.queryRow(ctx, `SELECT 1 FROM records WHERE collection = $1 AND id = $2`, r.Collection, r.ID).Scan(&one)
			if errors.Is(err, ErrNotFound) {
				return notFound("record")
			}
			if err != nil {
				return fmt.Errorf("store: update record: %w", err)
			}
			return &coffer.Error{Code: coffer.ECONFLICT, Message: "the record was changed by another request meanwhile; try again"}
		}
		for _, f := range idxFields {
			if _, err := q.exec(ctx, `DELETE FROM record_index WHERE collection = $1 AND record_id = $2 AND field = $3`,
				r.Collection, r.ID, f); err != nil {
				return fmt.Errorf("store: update index: %w", err)
			}
		}
		return insertIndex(ctx, q, r.Collection, r.ID, idx)
	})
}

// DeleteRecord deletes a record and its index entries; ENOTFOUND if absent.
func (db *DB) DeleteRecord(ctx context.Context, collection, id string) error {
	return db.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `DELETE FROM record_index WHERE collection = $1 AND record_id = $2`, collection, id); err != nil {
			return fmt.Errorf("store: delete index: %w", err)
		}
		n, err := q.exec(ctx, `DELETE FROM records WHERE collection = $1 AND id = $2`, collection, id)
		if err != nil {
			return fmt.Errorf("store: delete record: %w", err)
		}
		if n == 0 {
			return notFound("record")
		}
		return nil
	})
}

// SearchIndex returns the ids of records in collection whose field has one
// of the given MACs (one per live index key version), oldest id first, at
// most limit.
func (db *DB) SearchIndex(ctx context.Context, collection, field string, macs [][]byte, limit int) ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	for _, mac := range macs {
		rs, err := db.read.query(ctx, `SELECT record_id FROM record_index
			WHERE collection = $1 AND field = $2 AND mac = $3 ORDER BY record_id LIMIT $4`,
			collection, field, mac, limit)
		if err != nil {
			return nil, fmt.Errorf("store: search index: %w", err)
		}
		for rs.Next() {
			var id string
			if err := rs.Scan(&id); err != nil {
				rs.Close()
				return nil, fmt.Errorf("store: search index: %w", err)
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("store: search index: %w", err)
		}
	}
	return ids, nil
}

// IndexHas reports whether record id of collection has an index entry for
// field with one of the given MACs.
func (db *DB) IndexHas(ctx context.Context, collection, field, id string, macs [][]byte) (bool, error) {
	for _, mac := range macs {
		var one int
		err := db.read.queryRow(ctx, `SELECT 1 FROM record_index
			WHERE collection = $1 AND field = $2 AND mac = $3 AND record_id = $4`, collection, field, mac, id).Scan(&one)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("store: index entry: %w", err)
		}
		return true, nil
	}
	return false, nil
}

// StaleIndexEntries returns the index entries of collection's field filed
// under a key version below version, for record ids after afterID, in
// record id order, at most limit: the reindex job's work list.
func (db *DB) StaleIndexEntries(ctx context.Context, collection, field string, version uint32, afterID string, limit int) ([]coffer.IndexRef, error) {
	rs, err := db.read.query(ctx, `SELECT record_id, mac, version FROM record_index
		WHERE collection = $1 AND field = $2 AND version < $3 AND record_id > $4 ORDER BY record_id LIMIT $5`,
		collection, field, int64(version), afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: stale index entries: %w", err)
	}
	defer rs.Close()
	var out []coffer.IndexRef
	for rs.Next() {
		var (
			r = coffer.IndexRef{IndexEntry: coffer.IndexEntry{Field: field}}
			v int64
		)
		if err := rs.Scan(&r.RecordID, &r.MAC, &v); err != nil {
			return nil, fmt.Errorf("store: stale index entries: %w", err)
		}
		r.Version = uint32(v) // #nosec G115 -- stored from a uint32
		out = append(out, r)
	}
	return out, rs.Err()
}

// MoveIndexEntry replaces one index entry of a record with its successor
// under a newer key version, only if the entry is still as read: an update
// of the record in between (which files its own, current entry) wins, and
// MoveIndexEntry then reports false and changes nothing.
func (db *DB) MoveIndexEntry(ctx context.Context, collection, recordID string, old, next coffer.IndexEntry) (bool, error) {
	n, err := db.write.exec(ctx, `UPDATE record_index SET mac = $1, version = $2
		WHERE collection = $3 AND record_id = $4 AND field = $5 AND mac = $6 AND version = $7`,
		next.MAC, int64(next.Version), collection, recordID, old.Field, old.MAC, int64(old.Version))
	if err != nil {
		return false, fmt.Errorf("store: move index entry: %w", err)
	}
	return n == 1, nil
}

// SubjectRecords lists (collection, id) of every record of a data subject.
func (db *DB) SubjectRecords(ctx context.Context, subject string) ([][2]string, error) {
	rs, err := db.read.query(ctx, `SELECT collection, id FROM records WHERE subject = $1`, subject)
	if err != nil {
		return nil, fmt.Errorf("store: subject records: %w", err)
	}
	defer rs.Close()
	var out [][2]string
	for rs.Next() {
		var c, id string
		if err := rs.Scan(&c, &id); err != nil {
			return nil, fmt.Errorf("store: subject records: %w", err)
		}
		out = append(out, [2]string{c, id})
	}
	return out, rs.Err()
}

// DeleteSubjectRecords deletes every record of a data subject and their
// index entries in one transaction, returning how many records went.
func (db *DB) DeleteSubjectRecords(ctx context.Context, subject string) (int64, error) {
	var n int64
	err := db.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `DELETE FROM record_index WHERE EXISTS (SELECT 1 FROM records r
			WHERE r.subject = $1 AND r.collection = record_index.collection AND r.id = record_index.record_id)`, subject); err != nil {
			return fmt.Errorf("store: delete subject index: %w", err)
		}
		var err error
		n, err = q.exec(ctx, `DELETE FROM records WHERE subject = $1`, subject)
		if err != nil {
			return fmt.Errorf("store: delete subject records: %w", err)
		}
		return nil
	})
	return n, err
}

// UnindexedSubjectRecords returns the subject-bound records that have no
// blind index entry at all although their data key is usable (it has an
// active version; an erased subject's key has none, every version being
// destroyed), ordered by (collection, id) after
// the given position, at most limit. They are the records of a restored
// backup whose subject keys came back (a backup leaves their entries out,
// see subjectKeyPrefix); records of an erased subject are never listed.
// Page by passing the last record's collection and id.
func (db *DB) UnindexedSubjectRecords(ctx context.Context, collection, id string, limit int) ([]coffer.SealedRecord, error) {
	if limit < 1 {
		return nil, errors.New("store: unindexed subject records: limit must be at least 1")
	}
	rs, err := db.read.query(ctx, `SELECT `+recordCols+` FROM records r
		WHERE r.subject <> '' AND (r.collection > $1 OR (r.collection = $1 AND r.id > $2))
		AND EXISTS (SELECT 1 FROM data_keys k WHERE k.key_id = r.key_id AND k.state = $3)
		AND NOT EXISTS (SELECT 1 FROM record_index i WHERE i.collection = r.collection AND i.record_id = r.id)
		ORDER BY r.collection, r.id LIMIT $4`,
		collection, id, coffer.KeyActive, limit)
	if err != nil {
		return nil, fmt.Errorf("store: unindexed subject records: %w", err)
	}
	defer rs.Close()
	var out []coffer.SealedRecord
	for rs.Next() {
		r, err := scanRecord(rs)
		if err != nil {
			return nil, fmt.Errorf("store: unindexed subject records: %w", err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("store: unindexed subject records: %w", err)
	}
	return out, nil
}

// AddMissingIndexEntries files blind index entries for records that lack
// them, in one transaction: idx[i] are the entries of recs[i], and each
// goes in only if the record still holds the values it was read with
// (recs[i].Values: an update in between files entries of its own) and has
// no entry for that field yet. So it may run twice, or beside writers, and
// never files a second entry for a field. It returns how many it added.
func (db *DB) AddMissingIndexEntries(ctx context.Context, recs []coffer.SealedRecord, idx [][]coffer.IndexEntry) (int, error) {
	if len(recs) != len(idx) {
		return 0, errors.New("store: add index entries: one list of entries per record")
	}
	added := 0
	err := db.inTx(ctx, func(q querier) error {
		added = 0
		for i, r := range recs {
			if len(idx[i]) == 0 {
				continue
			}
			vals, err := encodeValues(r.Values)
			if err != nil {
				return err
			}
			for _, e := range idx[i] {
				n, err := q.exec(ctx, `INSERT INTO record_index (collection, field, mac, record_id, version)
					SELECT r.collection, $1, $2, r.id, $3 FROM records r
					WHERE r.collection = $4 AND r.id = $5 AND r.values_blob = $6
					AND NOT EXISTS (SELECT 1 FROM record_index i
						WHERE i.collection = r.collection AND i.record_id = r.id AND i.field = $1)`,
					e.Field, e.MAC, int64(e.Version), r.Collection, r.ID, vals)
				if err != nil {
					return fmt.Errorf("store: add index entries: insert into record_index: %w", err)
				}
				added += int(n)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}
