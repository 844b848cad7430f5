package store

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
)

// AppendAuditRows writes audit rows in their JSON form into audit_events,
// the table of events written before migration 20 (AppendAuditRecords
// writes the compact form). It writes rows (events, encoded by the audit log)
// and checkpoints in one transaction (one fsync for the whole group
// commit). A (node, seq) that exists fails it all.
func (db *DB) AppendAuditRows(ctx context.Context, events []coffer.AuditRow, checkpoints []coffer.AuditCheckpoint) error {
	if len(events) == 0 && len(checkpoints) == 0 {
		return nil
	}
	if db.dialect == Postgres {
		return db.appendAuditPostgres(ctx, events, checkpoints)
	}
	return db.inTx(ctx, func(q querier) error {
		per := db.rowsPerInsert(auditCols)
		for start := 0; start < len(events); start += per {
			end := min(start+per, len(events))
			var sb strings.Builder
			args := insertEvents(&sb, make([]any, 0, (end-start)*auditCols), events[start:end])
			if _, err := q.exec(ctx, sb.String(), args...); err != nil {
				return fmt.Errorf("store: append audit events: %w", err)
			}
		}
		return insertCheckpoints(ctx, q, checkpoints)
	})
}

// auditCols is how many columns an audit_events row binds.
const auditCols = 9

// insertCheckpoint starts the INSERT of one audit checkpoint; its
// checkpointCols values follow, from checkpointArgs.
const insertCheckpoint = `INSERT INTO audit_checkpoints (node, seq, hash, time, signature, key_version) VALUES `

// checkpointCols is how many columns an audit_checkpoints row binds.
const checkpointCols = 6

// checkpointArgs returns the values of c's row, in insertCheckpoint's
// order. A checkpoint without a key version was signed by version 1.
func checkpointArgs(c coffer.AuditCheckpoint) []any {
	return []any{c.Node, int64(c.Seq), c.Hash, micros(c.Time), c.Signature, // #nosec G115 -- seq < 2^63
		int64(coffer.AuditKeyVersion(c.KeyVersion))}
}

// insertEvents writes a multi-row INSERT of events into sb, numbering its
// placeholders after the args already bound, and returns args with the
// events' values appended.
func insertEvents(sb *strings.Builder, args []any, events []coffer.AuditRow) []any {
	sb.WriteString(`INSERT INTO audit_events (node, seq, id, time, principal, action, body, hash, prev_hash) VALUES `)
	for i := range events {
		e := &events[i]
		if i > 0 {
			sb.WriteByte(',')
		}
		placeholders(sb, len(args), auditCols)
		args = append(args, e.Node, int64(e.Seq), e.ID, micros(e.Time), e.Principal, e.Action, // #nosec G115 -- seq < 2^63
			e.Body, e.Hash, e.PrevHash)
	}
	return args
}

// insertEventsUnnest inserts audit events on PostgreSQL from one array per
// column (unnestArgs), numbered from $1: one statement text whatever the
// batch size, so it is parsed and planned once per connection, and nine
// parameters instead of nine per event.
const insertEventsUnnest = `INSERT INTO audit_events (node, seq, id, time, principal, action, body, hash, prev_hash)
 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])`

// unnestArgs returns insertEventsUnnest's arguments for events.
func unnestArgs(events []coffer.AuditRow) []any {
	n := len(events)
	nodes, ids, principals, actions, bodies, hashes, prevs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	seqs, times := make([]int64, n), make([]int64, n)
	for i := range events {
		e := &events[i]
		nodes[i], seqs[i], ids[i], times[i] = e.Node, int64(e.Seq), e.ID, micros(e.Time) // #nosec G115 -- seq < 2^63
		principals[i], actions[i], bodies[i], hashes[i], prevs[i] = e.Principal, e.Action, e.Body, e.Hash, e.PrevHash
	}
	return []any{nodes, seqs, ids, times, principals, actions, bodies, hashes, prevs}
}

// appendAuditPostgres appends legacy rows on PostgreSQL (see
// appendUnnestPostgres).
func (db *DB) appendAuditPostgres(ctx context.Context, events []coffer.AuditRow, checkpoints []coffer.AuditCheckpoint) error {
	var args []any
	if len(events) > 0 {
		args = unnestArgs(events)
	}
	return db.appendUnnestPostgres(ctx, len(events), insertEventsUnnest, args, checkpoints)
}

// appendUnnestPostgres appends n audit rows, bound as the arrays args of
// the UNNEST statement insert, and checkpoints on PostgreSQL. With at
// most one checkpoint (every batch but one that crosses a signing key
// rotation) it is one autocommitted statement, the checkpoint in a
// data-modifying WITH: one round trip instead of BEGIN, INSERTs and
// COMMIT, and just as atomic.
func (db *DB) appendUnnestPostgres(ctx context.Context, n int, insert string, args []any, checkpoints []coffer.AuditCheckpoint) error {
	if len(checkpoints) > 1 {
		return db.inTx(ctx, func(q querier) error {
			if n > 0 {
				if _, err := q.exec(ctx, insert, args...); err != nil {
					return fmt.Errorf("store: append audit events: %w", err)
				}
			}
			return insertCheckpoints(ctx, q, checkpoints)
		})
	}
	var sb strings.Builder
	if len(checkpoints) == 1 {
		if n > 0 {
			sb.WriteString(`WITH c AS (`)
		}
		sb.WriteString(insertCheckpoint)
		placeholders(&sb, len(args), checkpointCols)
		if n > 0 {
			sb.WriteString(`) `)
		}
		args = append(args, checkpointArgs(checkpoints[0])...)
	}
	if n > 0 {
		sb.WriteString(insert)
	}
	if _, err := db.write.exec(ctx, sb.String(), args...); err != nil {
		return fmt.Errorf("store: append audit: %w", err)
	}
	return nil
}

// insertCheckpoints inserts checkpoints one statement each.
func insertCheckpoints(ctx context.Context, q querier, checkpoints []coffer.AuditCheckpoint) error {
	var cp strings.Builder
	cp.WriteString(insertCheckpoint)
	placeholders(&cp, 0, checkpointCols)
	for _, c := range checkpoints {
		if _, err := q.exec(ctx, cp.String(), checkpointArgs(c)...); err != nil {
			return fmt.Errorf("store: append audit checkpoint: %w", err)
		}
	}
	return nil
}

// placeholders writes "($base+1,…,$base+n)": only placeholders ever go into
// the statement text.
func placeholders(sb *strings.Builder, base, n int) {
	sb.WriteByte('(')
	for j := 1; j <= n; j++ {
		if j > 1 {
			sb.WriteByte(',')
		}
		sb.WriteByte('$')
		sb.WriteString(strconv.Itoa(base + j))
	}
	sb.WriteByte(')')
}

// AuditHead returns the seq and hash of node's last event (0, "" if none).
func (db *DB) AuditHead(ctx context.Context, node string) (uint64, string, error) {
	rs, err := db.write.query(ctx, `SELECT seq, hash FROM audit_events WHERE node = $1 ORDER BY seq DESC LIMIT 1`, node)
	if err != nil {
		return 0, "", fmt.Errorf("store: audit head: %w", err)
	}
	defer rs.Close()
	if !rs.Next() {
		return 0, "", rs.Err()
	}
	var (
		seq  int64
		hash string
	)
	if err := rs.Scan(&seq, &hash); err != nil {
		return 0, "", fmt.Errorf("store: audit head: %w", err)
	}
	return uint64(seq), hash, nil // #nosec G115 -- stored from uint64 < 2^63
}

// auditRowCols are the columns of an audit row, in scanRow's order.
const auditRowCols = `node, seq, id, time, principal, action, hash, prev_hash, body`

// scanRow reads one row of auditRowCols.
func scanRow(rs rows) (coffer.AuditRow, error) {
	var (
		r       coffer.AuditRow
		seq, at int64
	)
	if err := rs.Scan(&r.Node, &seq, &r.ID, &at, &r.Principal, &r.Action,
		&r.Hash, &r.PrevHash, &r.Body); err != nil {
		return r, err
	}
	r.Seq, r.Time = uint64(seq), fromMicros(at) // #nosec G115 -- seq stored from uint64 < 2^63 (a negative one edited in fails audit.CheckColumns)
	return r, nil
}

// ScanAuditRows calls fn for each row of node after afterSeq, in seq
// order, paging through the table so memory stays bounded; fn runs
// between pages, never while a query is open. It returns fn's error as is.
func (db *DB) ScanAuditRows(ctx context.Context, node string, afterSeq uint64, fn func(*coffer.AuditRow) error) error {
	after := int64(afterSeq) // #nosec G115 -- seq < 2^63
	for {
		rs, err := db.read.query(ctx, `SELECT `+auditRowCols+` FROM audit_events WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT 5000`, node, after)
		if err != nil {
			return fmt.Errorf("store: scan audit: %w", err)
		}
		var page []coffer.AuditRow
		for rs.Next() {
			r, err := scanRow(rs)
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
		if len(page) < 5000 {
			return nil
		}
	}
}

// auditNodesQuery lists the nodes of the audit tables by skipping from
// one node to the next along each table's (node, seq) primary key: a
// handful of index lookups, where SELECT DISTINCT read every row (a fifth
// of audit verify's time on a million events).
const auditNodesQuery = `WITH RECURSIVE
 e(node) AS (SELECT min(node) FROM audit_events UNION ALL SELECT (SELECT min(node) FROM audit_events WHERE node > e.node) FROM e WHERE e.node IS NOT NULL),
 l(node) AS (SELECT min(node) FROM audit_log UNION ALL SELECT (SELECT min(node) FROM audit_log WHERE node > l.node) FROM l WHERE l.node IS NOT NULL),
 c(node) AS (SELECT min(node) FROM audit_checkpoints UNION ALL SELECT (SELECT min(node) FROM audit_checkpoints WHERE node > c.node) FROM c WHERE c.node IS NOT NULL)
SELECT node FROM e WHERE node IS NOT NULL UNION SELECT node FROM l WHERE node IS NOT NULL UNION SELECT node FROM c WHERE node IS NOT NULL ORDER BY 1`

// AuditNodes lists every node with events or checkpoints, sorted.
func (db *DB) AuditNodes(ctx context.Context) ([]string, error) {
	rs, err := db.read.query(ctx, auditNodesQuery)
	if err != nil {
		return nil, fmt.Errorf("store: audit nodes: %w", err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var n string
		if err := rs.Scan(&n); err != nil {
			return nil, fmt.Errorf("store: audit nodes: %w", err)
		}
		out = append(out, n)
	}
	return out, rs.Err()
}

// Checkpoints returns node's checkpoints in seq order.
func (db *DB) Checkpoints(ctx context.Context, node string) ([]coffer.AuditCheckpoint, error) {
	rs, err := db.read.query(ctx, `SELECT seq, hash, time, signature, key_version FROM audit_checkpoints WHERE node = $1 ORDER BY seq`, node)
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	defer rs.Close()
	var out []coffer.AuditCheckpoint
	for rs.Next() {
		var (
			c            = coffer.AuditCheckpoint{Node: node}
			seq, at, ver int64
		)
		if err := rs.Scan(&seq, &c.Hash, &at, &c.Signature, &ver); err != nil {
			return nil, fmt.Errorf("store: checkpoints: %w", err)
		}
		if ver < 1 || ver > math.MaxUint32 {
			// Only an edit outside Coffer puts it out of range (a CHECK
			// keeps it at 1 or more): read as a version no key has, which
			// verification reports naming the checkpoint.
			ver = math.MaxUint32
		}
		c.Seq, c.Time, c.KeyVersion = uint64(seq), fromMicros(at), uint32(ver) // #nosec G115 -- seq stored from uint64 < 2^63; ver clamped above
		out = append(out, c)
	}
	return out, rs.Err()
}

// ListAuditRows reads up to q.Limit rows whose columns match q, in
// (time, node, seq) order. The columns only narrow down which rows are
// read: the audit log answers from their bodies.
func (db *DB) ListAuditRows(ctx context.Context, q coffer.AuditQuery) ([]coffer.AuditRow, error) {
	stmt, args := auditListQuery(auditRowCols, "audit_events", q)
	rs, err := db.read.query(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	defer rs.Close()
	var out []coffer.AuditRow
	for rs.Next() {
		r, err := scanRow(rs)
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
