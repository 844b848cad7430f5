package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
)

// The compact audit table (migration 20): see coffer.AuditRecord.

// auditLogCols is how many columns an audit_log row binds.
const auditLogCols = 7

// AppendAuditRecords writes audit records (events, encoded by the audit
// log) and checkpoints in one transaction (one fsync for the whole group
// commit). A (node, seq) that exists fails it all.
func (db *DB) AppendAuditRecords(ctx context.Context, recs []coffer.AuditRecord, checkpoints []coffer.AuditCheckpoint) error {
	if len(recs) == 0 && len(checkpoints) == 0 {
		return nil
	}
	if db.dialect == Postgres {
		return db.appendAuditLogPostgres(ctx, recs, checkpoints)
	}
	return db.inTx(ctx, func(q querier) error {
		per := db.rowsPerInsert(auditLogCols)
		for start := 0; start < len(recs); start += per {
			end := min(start+per, len(recs))
			var sb strings.Builder
			args := insertRecords(&sb, make([]any, 0, (end-start)*auditLogCols), recs[start:end])
			if _, err := q.exec(ctx, sb.String(), args...); err != nil {
				return fmt.Errorf("store: append audit events: %w", err)
			}
		}
		return insertCheckpoints(ctx, q, checkpoints)
	})
}

// insertRecords writes a multi-row INSERT of recs into sb, numbering its
// placeholders after the args already bound, and returns args with the
// records' values appended.
func insertRecords(sb *strings.Builder, args []any, recs []coffer.AuditRecord) []any {
	sb.WriteString(`INSERT INTO audit_log (node, seq, time, principal, action, hash, body) VALUES `)
	for i := range recs {
		r := &recs[i]
		if i > 0 {
			sb.WriteByte(',')
		}
		placeholders(sb, len(args), auditLogCols)
		args = append(args, r.Node, int64(r.Seq), micros(r.Time), r.Principal, r.Action, r.Hash, r.Body) // #nosec G115 -- seq < 2^63
	}
	return args
}

// insertRecordsUnnest inserts audit records on PostgreSQL from one array
// per column, numbered from $1: one statement text whatever the batch size.
const insertRecordsUnnest = `INSERT INTO audit_log (node, seq, time, principal, action, hash, body)
 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bytea[], $7::bytea[])`

func unnestRecordArgs(recs []coffer.AuditRecord) []any {
	n := len(recs)
	nodes, principals, actions := make([]string, n), make([]string, n), make([]string, n)
	seqs, times := make([]int64, n), make([]int64, n)
	hashes, bodies := make([][]byte, n), make([][]byte, n)
	for i := range recs {
		r := &recs[i]
		nodes[i], seqs[i], times[i], principals[i], actions[i] = r.Node, int64(r.Seq), micros(r.Time), r.Principal, r.Action // #nosec G115 -- seq < 2^63
		hashes[i], bodies[i] = r.Hash, r.Body
	}
	return []any{nodes, seqs, times, principals, actions, hashes, bodies}
}

// appendAuditLogPostgres appends records on PostgreSQL (see
// appendUnnestPostgres).
func (db *DB) appendAuditLogPostgres(ctx context.Context, recs []coffer.AuditRecord, checkpoints []coffer.AuditCheckpoint) error {
	var args []any
	if len(recs) > 0 {
		args = unnestRecordArgs(recs)
	}
	return db.appendUnnestPostgres(ctx, len(recs), insertRecordsUnnest, args, checkpoints)
}

// AuditLogHead returns the seq and hash of node's last record in
// audit_log (0, nil if none).
func (db *DB) AuditLogHead(ctx context.Context, node string) (uint64, []byte, error) {
	rs, err := db.write.query(ctx, `SELECT seq, hash FROM audit_log WHERE node = $1 ORDER BY seq DESC LIMIT 1`, node)
	if err != nil {
		return 0, nil, fmt.Errorf("store: audit head: %w", err)
	}
	defer rs.Close()
	if !rs.Next() {
		return 0, nil, rs.Err()
	}
	var (
		seq  int64
		hash []byte
	)
	if err := rs.Scan(&seq, &hash); err != nil {
		return 0, nil, fmt.Errorf("store: audit head: %w", err)
	}
	return uint64(seq), hash, nil // #nosec G115 -- stored from uint64 < 2^63
}

// AuditRecordHash returns the hash of node's record seq in audit_log, and
// false when there is none.
func (db *DB) AuditRecordHash(ctx context.Context, node string, seq uint64) ([]byte, bool, error) {
	var hash []byte
	err := db.read.queryRow(ctx, `SELECT hash FROM audit_log WHERE node = $1 AND seq = $2`, node, int64(seq)).Scan(&hash) // #nosec G115 -- seq < 2^63
	if errors.Is(mapErr(err), ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: audit hash: %w", err)
	}
	return hash, true, nil
}

// auditLogCols are the columns of an audit_log row, in scanAuditRecord's
// order.
const auditLogSelect = `node, seq, time, principal, action, hash, body`

func scanAuditRecord(rs rows) (coffer.AuditRecord, error) {
	var (
		r       coffer.AuditRecord
		seq, at int64
	)
	if err := rs.Scan(&r.Node, &seq, &at, &r.Principal, &r.Action, &r.Hash, &r.Body); err != nil {
		return r, err
	}
	r.Seq, r.Time = uint64(seq), fromMicros(at) // #nosec G115 -- seq stored from uint64 < 2^63
	return r, nil
}

// ScanAuditRecords calls fn for each audit_log record of node after
// afterSeq, in seq order, paging through the table so memory stays
// bounded; fn runs between pages, never while a query is open. It returns
// fn's error as is.
func (db *DB) ScanAuditRecords(ctx context.Context, node string, afterSeq uint64, fn func(*coffer.AuditRecord) error) error {
	const pageSize = 10000
	after := int64(afterSeq) // #nosec G115 -- seq < 2^63
	page := make([]coffer.AuditRecord, 0, pageSize)
	for {
		rs, err := db.read.query(ctx, `SELECT `+auditLogSelect+` FROM audit_log WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT `+strconv.Itoa(pageSize), node, after)
		if err != nil {
			return fmt.Errorf("store: scan audit: %w", err)
		}
		page = page[:0]
		for rs.Next() {
			r, err := scanAuditRecord(rs)
			if err != nil {
				rs.Close()
				return fmt.Errorf("store: scan audit: %w", err)
			}
			page = append(page, r)
			after = int64(r.Seq) // #nosec G115 -- read from an int64 just above
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return fmt.Errorf("store: scan audit: %w", err)
		}
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
	}
}

// ListAuditRecords reads up to q.Limit audit_log records whose columns
// match q, in (time, node, seq) order.
func (db *DB) ListAuditRecords(ctx context.Context, q coffer.AuditQuery) ([]coffer.AuditRecord, error) {
	stmt, args := auditListQuery(auditLogSelect, "audit_log", q)
	rs, err := db.read.query(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	defer rs.Close()
	var out []coffer.AuditRecord
	for rs.Next() {
		r, err := scanAuditRecord(rs)
		if err != nil {
			return nil, fmt.Errorf("store: list audit: %w", err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	return out, nil
}

// auditListQuery returns the listing statement over table for q and its
// arguments: only column names and placeholders are in the text.
func auditListQuery(cols, table string, q coffer.AuditQuery) (string, []any) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Principal != "" {
		where = append(where, "principal = "+arg(q.Principal))
	}
	if q.Action != "" {
		where = append(where, "action = "+arg(q.Action))
	}
	if !q.Since.IsZero() {
		where = append(where, "time >= "+arg(micros(q.Since)))
	}
	if q.After != nil {
		t, n, s := arg(micros(q.After.Time)), arg(q.After.Node), arg(int64(q.After.Seq)) // #nosec G115 -- seq < 2^63
		where = append(where, "(time > "+t+" OR (time = "+t+" AND (node > "+n+" OR (node = "+n+" AND seq > "+s+"))))")
	}
	stmt := `SELECT ` + cols + ` FROM ` + table
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	stmt += " ORDER BY time, node, seq LIMIT " + arg(int64(q.Limit))
	return stmt, args
}
