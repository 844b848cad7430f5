package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cofferhq/coffer/internal/coffer"
)

// ErrNotEmpty is returned by Import when the store already holds data: a
// backup is only ever restored into an empty, freshly migrated store.
var ErrNotEmpty = errors.New("store: restore needs an empty store")

// colKind is the one Go type a column's values take in Export and Import.
type colKind uint8

const (
	kInt  colKind = iota + 1 // int64
	kText                    // string
	kBlob                    // []byte
)

type column struct {
	name string
	kind colKind
	null bool // NULL allowed
	// since is the migration that added the column to its table, 0 if the
	// table had it from the start: a backup written at an older schema
	// version has no value for it (see tablesAt).
	since int64
}

// addedIn returns c as added by migration v.
func (c column) addedIn(v int64) column {
	c.since = v
	return c
}

// backupTable is one table as backups see it: the columns in the order of a
// row, and the primary key to read rows in a stable order.
type backupTable struct {
	name string
	cols []column
	key  string // ORDER BY list
}

func ci(n string) column  { return column{name: n, kind: kInt} }
func ct(n string) column  { return column{name: n, kind: kText} }
func cb(n string) column  { return column{name: n, kind: kBlob} }
func cin(n string) column { return column{name: n, kind: kInt, null: true} }
func ctn(n string) column { return column{name: n, kind: kText, null: true} }
func cbn(n string) column { return column{name: n, kind: kBlob, null: true} }

// backupTables lists every table of the schema (goose's version table
// aside) in dependency order: a table comes after the tables it references,
// so Import can insert them in this order with foreign keys enforced. Table
// and column names reach SQL text only from here, never from a backup file.
//
// A migration that adds a table or a column must add it here too, a column
// at the end of its table's list and marked addedIn(that migration), so
// that backups of older schema versions still restore (see tablesAt); the
// store tests fail until it does. Only columns that have a default (or may
// be NULL) can be added this way.
func backupTables() []backupTable {
	return []backupTable{
		{"collections", []column{ct("name"), ct("schema_json"), ci("retention_s"), ci("created_at")}, "name"},
		{"records", []column{ct("collection"), ct("id"), ct("owner"), ct("subject"), ct("key_id"), cb("values_blob"),
			ci("canary"), ci("created_at"), ci("updated_at"), cin("expires_at"), ci("revision").addedIn(9), cbn("meta_seal").addedIn(9)}, "collection, id"},
		{"record_index", []column{ct("collection"), ct("field"), cb("mac"), ct("record_id"), ci("version")},
			"collection, field, mac, record_id"},
		{"data_keys", []column{ct("key_id"), ci("version"), cb("wrapped"), ct("state"), ci("created_at"), ci("uses").addedIn(2),
			ci("rewrap_uses").addedIn(4)}, "key_id, version"},
		{"clients", []column{ct("id"), ct("name"), ct("secret_hash"), ct("roles"), ct("attributes"), ci("disabled"),
			ci("created_at"), ci("generation").addedIn(16)}, "id"},
		{"users", []column{ct("id"), ct("username"), ct("password_hash"), ct("roles"), ct("attributes"), cbn("totp_secret"),
			ci("totp_confirmed"), ci("totp_last_step"), ct("recovery_hashes"), ci("disabled"), ci("created_at"),
			ctn("username_key").addedIn(7), ct("mfa_enrolment_hash").addedIn(7), ci("mfa_enrolment_expires").addedIn(7),
			ci("generation").addedIn(16)}, "id"},
		{"signing_keys", []column{ct("kid"), cb("sealed"), ci("active"), ci("created_at"), ci("not_after")}, "kid"},
		{"revoked_tokens", []column{ct("jti"), ci("expires_at")}, "jti"},
		{"auth_failures", []column{ct("key"), ci("failures"), ci("locked_until"), ci("updated_at")}, "key"},
		{"policy", []column{ci("id"), ci("version"), ct("format"), cb("source"), ci("updated_at"), ci("schema_version").addedIn(10)}, "id"},
		{"tokens", []column{cb("mac"), ct("type"), ct("mode"), ci("version"), cb("sealed"), ci("canary"), cin("expires_at"),
			ci("created_at"), ci("fpe_options").addedIn(10)}, "mac"},
		{"audit_events", []column{ct("node"), ci("seq"), ct("id"), ci("time"), ct("principal"), ct("action"), ct("body"),
			ct("hash"), ct("prev_hash")}, "node, seq"},
		{"audit_log", []column{ct("node").addedIn(20), ci("seq").addedIn(20), ci("time").addedIn(20), ct("principal").addedIn(20),
			ct("action").addedIn(20), cb("hash").addedIn(20), cb("body").addedIn(20)}, "node, seq"},
		{"audit_checkpoints", []column{ct("node"), ci("seq"), ct("hash"), ci("time"), cb("signature"), ci("key_version").addedIn(3)}, "node, seq"},
		{"audit_segments", []column{ct("node").addedIn(21), ci("first_seq").addedIn(21), ci("last_seq").addedIn(21),
			ct("prev_hash").addedIn(21), ct("head_hash").addedIn(21), ci("first_time").addedIn(21), ci("last_time").addedIn(21),
			ci("bytes").addedIn(21), ci("verified_at").addedIn(21), ci("pruned_at").addedIn(21)}, "node, first_seq"},
		{"security_events", []column{ct("id"), ci("time"), ct("kind"), ct("severity"), ct("principal"), ct("detail")}, "id"},
		{"detect_counts", []column{ct("key"), ci("window_start"), ci("count")}, "key, window_start"},
		{"suspensions", []column{ct("principal"), ci("until"), ct("reason")}, "principal"},
		{"transit_keys", []column{ct("name"), ci("created_at"), ci("min_decryption_version"), ci("latest_version"),
			ci("deletable"), ci("auto_rotate_s"), ci("encryptions"), ct("origin").addedIn(19), ci("vault_latest_version").addedIn(19)}, "name"},
		{"jobs", []column{ct("name"), ct("state"), ct("lease_by"), ci("lease_until"), ci("updated_at"), ci("fence").addedIn(17)}, "name"},
		{"meta", []column{ct("key"), ct("value")}, "key"},
		{"nodes", []column{ct("node").addedIn(15), ct("instance").addedIn(15), ct("host").addedIn(15), ct("version").addedIn(15),
			ci("schema_version").addedIn(15), ci("started_at").addedIn(15), ci("heartbeat_at").addedIn(15),
			ci("lease_until").addedIn(15)}, "node"},
		{"idempotency_keys", []column{ct("principal").addedIn(18), ct("key").addedIn(18), cb("fingerprint").addedIn(18),
			ct("state").addedIn(18), ct("owner").addedIn(18), ct("instance").addedIn(18), ci("claim_until").addedIn(18),
			ci("status").addedIn(18), ct("content_type").addedIn(18), cbn("body").addedIn(18), ci("created_at").addedIn(18),
			ci("expires_at").addedIn(18)}, "principal, key"},
	}
}

// oldestRestorable is the oldest schema version whose backups Import can
// take: every migration since has only added columns (see addedIn).
const oldestRestorable = 1

// tablesAt returns backupTables as schema version v has them: without the
// columns added by later migrations. v 0 stands for the latest version.
func tablesAt(v int64) []backupTable {
	ts := backupTables()
	if v <= 0 {
		return ts
	}
	for i := range ts {
		cols := make([]column, 0, len(ts[i].cols))
		for _, c := range ts[i].cols {
			if c.since <= v {
				cols = append(cols, c)
			}
		}
		ts[i].cols = cols
	}
	// A table added by a later migration has no column at v: not there.
	return slices.DeleteFunc(ts, func(t backupTable) bool { return len(t.cols) == 0 })
}

// Crypto-shredding reaches backups: a backup never holds what would make
// an erased data subject's values readable again.
//
//   - Subject data keys ("subject/…") are exported as destroyed tombstones,
//     their wrapped bytes left out. The live store keeps them; a restored
//     backup holds the subjects' records, sealed, but no key opens them,
//     and no new key is ever made for those subjects there.
//
//   - The blind index entries of records that name a subject are left
//     out: a MAC under an index key (which backups do carry) would let
//     whoever holds the backup and the root key confirm a guessed value.
//
//   - The audit value keys ("audit-value/…") are left out: erasing a
//     subject shreds their versions in the live store (see
//     auditValueKeyFilter).
//
// So erasing a subject in the live store (destroying its key) is final for
// every backup, old ones included, because no backup ever had the key.
//
// A restore may take the keys back from a second source that is not a
// backup: a deployment under the same root key that still holds them,
// normally the live one (RestoreSubjectKeys replaces each tombstone with
// that store's versions, read through OpenReadOnly; a key destroyed there
// stays a tombstone), after which the vault files the left-out index
// entries again (UnindexedSubjectRecords, AddMissingIndexEntries). The
// keys live only in running deployments, so an erasure there is still
// final for every backup; and should every deployment holding them be
// lost, subject-bound values are lost with them (a PostgreSQL replica,
// not a backup, is what survives that).
var subjectKeyPrefix = coffer.KeyPrefix(coffer.KeySubject)

// subjectIndexFilter keeps the index entries of subject-less records only.
const subjectIndexFilter = `NOT EXISTS (SELECT 1 FROM records r WHERE r.collection = record_index.collection
	AND r.id = record_index.record_id AND r.subject <> '')`

// auditValueKeyFilter keeps every data key but the audit value keys
// (coffer.KeyAuditValue's prefix): erasing a subject
// shreds their versions so that no key ties the audit log's MACs of past
// searches to a value, and a backup holding them would undo that. A
// restored deployment makes new ones on first use.
var auditValueKeyFilter = "substr(key_id, 1, " + strconv.Itoa(len(coffer.KeyPrefix(coffer.KeyAuditValue))) +
	") <> '" + coffer.KeyPrefix(coffer.KeyAuditValue) + "'"

// filter is the fixed SQL condition that leaves t's rows out of backups,
// or "".
func (t backupTable) filter() string {
	switch t.name {
	case "record_index":
		return subjectIndexFilter
	case "data_keys":
		return auditValueKeyFilter
	}
	return ""
}

// shredSubjectKey turns an exported data_keys row of a subject key into a
// destroyed tombstone: state destroyed, wrapped bytes empty.
func shredSubjectKey(t backupTable, row []any) {
	if t.name != "data_keys" {
		return
	}
	if id, ok := row[0].(string); ok && coffer.ParseKeyID(id).Kind == coffer.KeySubject {
		row[2] = []byte{}
		row[3] = coffer.KeyDestroyed
	}
}

func (t backupTable) colList() string {
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// SchemaVersion returns the highest migration applied to the database. A
// backup records it, and a restore refuses a store at another version.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	p, err := db.provider()
	if err != nil {
		return 0, err
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

// Export calls fn with every row of every table, tables in dependency
// order and rows in primary-key order, all read from one consistent
// snapshot while writers go on: a REPEATABLE READ READ ONLY transaction on
// PostgreSQL, one deferred read transaction on one connection on SQLite (in
// WAL mode it sees a single snapshot and blocks no writer, though the WAL
// cannot be checkpointed past it until it ends).
//
// Values are int64, string, []byte or nil (a NULL); a row's values follow
// the table's columns in a fixed order, and a blob is never nil unless it
// is NULL. fn owns row and may keep it. An error from fn stops the export
// and is returned wrapped. Errors name tables and columns, never values.
//
// Subject keys leave as destroyed tombstones and the index entries of
// subject-bound records not at all (see subjectKeyPrefix): crypto-shredding
// must reach every backup, including those taken before an erasure. A
// restore gets the keys of subjects not erased from the live deployment
// instead, never from the backup.
func (db *DB) Export(ctx context.Context, fn func(table string, row []any) error) error {
	// A store not yet migrated to the latest version exports the columns
	// its version has; the backup's header records that version.
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	return db.snapshot(ctx, func(q querier) error {
		for _, t := range tablesAt(v) {
			if err := exportTable(ctx, q, t, fn); err != nil {
				return err
			}
		}
		return nil
	})
}

// snapshot runs fn in a read-only transaction that sees one snapshot.
func (db *DB) snapshot(ctx context.Context, fn func(q querier) error) error {
	switch rq := db.read.(type) {
	case sqlQ:
		r, ok := rq.db.(*sql.DB)
		if !ok {
			return errors.New("store: export: unexpected SQLite handle")
		}
		// ReadOnly makes the driver issue a plain (deferred) BEGIN rather
		// than the write side's BEGIN IMMEDIATE, so the server keeps writing.
		tx, err := r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return fmt.Errorf("store: export: begin: %w", err)
		}
		defer func() { _ = tx.Rollback() }()
		return fn(sqlQ{ph: rq.ph, db: tx})
	case pgQ:
		pool, ok := rq.p.(*pgxpool.Pool)
		if !ok {
			return errors.New("store: export: unexpected PostgreSQL handle")
		}
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return fmt.Errorf("store: export: begin: %w", err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		return fn(pgQ{tx})
	default:
		return errors.New("store: export: unsupported backend")
	}
}

func exportTable(ctx context.Context, q querier, t backupTable, fn func(string, []any) error) error {
	where := ""
	if f := t.filter(); f != "" {
		where = " WHERE " + f
	}
	rs, err := q.query(ctx, "SELECT "+t.colList()+" FROM "+t.name+where+" ORDER BY "+t.key)
	if err != nil {
		return fmt.Errorf("store: export %s: %w", t.name, err)
	}
	defer rs.Close()
	raw := make([]any, len(t.cols))
	dest := make([]any, len(t.cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	for rs.Next() {
		if err := rs.Scan(dest...); err != nil {
			return fmt.Errorf("store: export %s: %w", t.name, err)
		}
		row := make([]any, len(t.cols))
		for i, c := range t.cols {
			v, err := normalize(c, raw[i])
			if err != nil {
				return fmt.Errorf("store: export %s.%s: %w", t.name, c.name, err)
			}
			row[i] = v
			raw[i] = nil
		}
		shredSubjectKey(t, row)
		if err := fn(t.name, row); err != nil {
			return fmt.Errorf("store: export %s: %w", t.name, err)
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("store: export %s: %w", t.name, err)
	}
	return nil
}

// normalize turns what a driver scanned into the column's one Go type.
func normalize(c column, v any) (any, error) {
	if v == nil {
		if !c.null {
			return nil, errors.New("NULL in a NOT NULL column")
		}
		return nil, nil
	}
	switch c.kind {
	case kInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		case int16:
			return int64(x), nil
		case int:
			return int64(x), nil
		}
	case kText:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte: // SQLite keeps a blob stored into a TEXT column as a blob
			return string(x), nil
		}
	case kBlob:
		switch x := v.(type) {
		case []byte:
			if x == nil {
				x = []byte{}
			}
			return x, nil
		case string: // SQLite keeps text stored into a BLOB column as text
			return []byte(x), nil
		}
	}
	return nil, fmt.Errorf("unexpected value type %T", v)
}

// checkValue enforces the column's type on a value read from a backup.
func checkValue(c column, v any) (any, error) {
	if v == nil {
		if !c.null {
			return nil, errors.New("NULL in a NOT NULL column")
		}
		return nil, nil
	}
	switch c.kind {
	case kInt:
		if x, ok := v.(int64); ok {
			return x, nil
		}
	case kText:
		if x, ok := v.(string); ok {
			return x, nil
		}
	case kBlob:
		if x, ok := v.([]byte); ok {
			if x == nil { // a nil []byte binds as NULL on PostgreSQL
				x = []byte{}
			}
			return x, nil
		}
	}
	return nil, fmt.Errorf("value of type %T, want %s", v, c.kind)
}

func (k colKind) String() string {
	switch k {
	case kInt:
		return "int64"
	case kText:
		return "string"
	case kBlob:
		return "[]byte"
	}
	return "unknown"
}

// Placeholders per INSERT. SQLite resolves each $N by a linear search of
// the statement's parameter names, so a statement's cost grows with the
// square of its placeholders: small batches are fastest there (on the
// restore benchmark, 256 placeholders restore about 10× faster than 8192).
// PostgreSQL has no such cost and stays well under its 65535 limit.
const (
	importParamsSQLite   = 256
	importParamsPostgres = 8192
)

// Import loads rows into an empty store in one transaction: next returns
// one row at a time, as Export produced it, and io.EOF after the last.
// Nothing is committed unless next reaches io.EOF and every row inserts;
// any other error from next, a row that does not fit its table's columns,
// or a constraint violation rolls everything back.
//
// Import refuses (ErrNotEmpty) a store that holds any row in any table;
// restore into a freshly migrated store. Tables must come in Export's
// order; names from next only select from the fixed table list and never
// reach SQL text. Rows go in as parameterized multi-row INSERTs.
func (db *DB) Import(ctx context.Context, next func() (table string, row []any, err error)) error {
	return db.ImportSchema(ctx, 0, next)
}

// DiscardRestore empties every table of a PostgreSQL store, for a restore
// whose import went in (into a store Import found empty) but whose later
// steps failed: the database is left as the restore found it, so that it
// can be restored into again. It must never be called on any other store:
// it removes everything, the append-only audit tables included (TRUNCATE
// is not the DELETE their triggers refuse). On SQLite it does nothing; the
// restore removes the database file instead.
func (db *DB) DiscardRestore(ctx context.Context) error {
	if db.dialect != Postgres {
		return nil
	}
	if db.readOnly {
		return ErrReadOnly
	}
	names := make([]string, 0, len(backupTables()))
	for _, t := range backupTables() {
		names = append(names, t.name)
	}
	// Only the fixed table names are in the text.
	if _, err := db.write.exec(ctx, "TRUNCATE "+strings.Join(names, ", ")); err != nil {
		return fmt.Errorf("store: discard restore: %w", err)
	}
	return nil
}

// ImportSchema is Import for rows exported at an older schema version
// (schema; 0: the latest): their tables lack the columns later migrations
// added, which take their defaults here. The store itself must be migrated
// to the latest version.
func (db *DB) ImportSchema(ctx context.Context, schema int64, next func() (table string, row []any, err error)) error {
	if schema != 0 && schema < oldestRestorable {
		return fmt.Errorf("store: import: a backup of schema version %d cannot be restored (the oldest is %d)", schema, oldestRestorable)
	}
	tables := tablesAt(schema)
	return db.inTx(ctx, func(q querier) error {
		for _, t := range tables {
			var one int
			err := q.queryRow(ctx, "SELECT 1 FROM "+t.name+" LIMIT 1").Scan(&one)
			if err == nil {
				return fmt.Errorf("%w: table %s has rows", ErrNotEmpty, t.name)
			}
			if !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("store: import: check %s is empty: %w", t.name, err)
			}
		}
		im := importer{q: q, maxParams: importParamsPostgres}
		if db.dialect == SQLite {
			im.maxParams = importParamsSQLite
		}
		pos := 0
		for {
			name, row, err := next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("store: import: %w", err)
			}
			if name != tables[pos].name {
				i := pos + 1
				for i < len(tables) && tables[i].name != name {
					i++
				}
				if i == len(tables) {
					return fmt.Errorf("store: import: unknown table or table out of order after %s", tables[pos].name)
				}
				if err := im.flush(ctx); err != nil {
					return err
				}
				pos = i
			}
			if err := im.add(ctx, &tables[pos], row); err != nil {
				return err
			}
		}
		return im.flush(ctx)
	})
}

// importer batches rows of one table into multi-row INSERTs.
type importer struct {
	q         querier
	maxParams int
	t         *backupTable
	args      []any
	n         int // rows in args
}

func (im *importer) add(ctx context.Context, t *backupTable, row []any) error {
	if len(row) != len(t.cols) {
		return fmt.Errorf("store: import %s: row of %d values, want %d", t.name, len(row), len(t.cols))
	}
	im.t = t
	for i, c := range t.cols {
		v, err := checkValue(c, row[i])
		if err != nil {
			return fmt.Errorf("store: import %s.%s: %w", t.name, c.name, err)
		}
		im.args = append(im.args, v)
	}
	im.n++
	if len(im.args)+len(t.cols) > im.maxParams {
		return im.flush(ctx)
	}
	return nil
}

func (im *importer) flush(ctx context.Context) error {
	if im.n == 0 {
		return nil
	}
	t := im.t
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + t.name + " (" + t.colList() + ") VALUES ")
	p := 1
	for r := range im.n {
		if r > 0 {
			sb.WriteByte(',')
		}
		// Only placeholders are written into the statement.
		sb.WriteByte('(')
		for j := range t.cols {
			if j > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('$')
			sb.WriteString(strconv.Itoa(p))
			p++
		}
		sb.WriteByte(')')
	}
	if _, err := im.q.exec(ctx, sb.String(), im.args...); err != nil {
		return fmt.Errorf("store: import %s: %w", t.name, err)
	}
	clear(im.args)
	im.args, im.n = im.args[:0], 0
	return nil
}

// ExportRows counts the rows Export would give now (a backup's progress
// total; rows written meanwhile may make Export give a few more).
func (db *DB) ExportRows(ctx context.Context) (int64, error) {
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: count export rows: %w", err)
	}
	var total int64
	for _, t := range tablesAt(v) {
		where := ""
		if f := t.filter(); f != "" {
			where = " WHERE " + f
		}
		var n int64
		// Table names and filters are this package's constants, never input.
		if err := db.read.queryRow(ctx, "SELECT COUNT(*) FROM "+t.name+where).Scan(&n); err != nil {
			return 0, fmt.Errorf("store: count %s: %w", t.name, err)
		}
		total += n
	}
	return total, nil
}

// CountDataKeys counts the stored data key versions (a root key
// rotation's progress total).
func (db *DB) CountDataKeys(ctx context.Context) (int64, error) {
	var n int64
	if err := db.read.queryRow(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count data keys: %w", err)
	}
	return n, nil
}
