package store

import (
	"context"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// auditSegmentCols are audit_segments' columns, in scanSegment's order.
const auditSegmentCols = `node, first_seq, last_seq, prev_hash, head_hash, first_time, last_time, bytes, verified_at, pruned_at`

func scanSegment(rs rows) (coffer.AuditSegment, error) {
	var (
		s                                    coffer.AuditSegment
		first, last, ft, lt, vat, pat, bytes int64
	)
	if err := rs.Scan(&s.Node, &first, &last, &s.PrevHash, &s.HeadHash, &ft, &lt, &bytes, &vat, &pat); err != nil {
		return s, err
	}
	s.FirstSeq, s.LastSeq = uint64(first), uint64(last) // #nosec G115 -- stored from uint64 < 2^63, CHECKed >= 1
	s.FirstTime, s.LastTime, s.Bytes, s.Verified = fromMicros(ft), fromMicros(lt), bytes, fromMicros(vat)
	if pat != 0 {
		s.Pruned = fromMicros(pat)
	}
	return s, nil
}

func (db *DB) segments(ctx context.Context, where string, args ...any) ([]coffer.AuditSegment, error) {
	rs, err := db.read.query(ctx, `SELECT `+auditSegmentCols+` FROM audit_segments `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("store: audit segments: %w", err)
	}
	defer rs.Close()
	var out []coffer.AuditSegment
	for rs.Next() {
		s, err := scanSegment(rs)
		if err != nil {
			return nil, fmt.Errorf("store: audit segments: %w", err)
		}
		out = append(out, s)
	}
	return out, rs.Err()
}

// AuditSegments returns node's archived segments in seq order.
func (db *DB) AuditSegments(ctx context.Context, node string) ([]coffer.AuditSegment, error) {
	return db.segments(ctx, `WHERE node = $1 ORDER BY first_seq`, node)
}

// PrunedAuditSegments returns up to limit pruned segments, of every node,
// whose last event is at or after since, in (last_time, node, first_seq)
// order: the archived history a listing from since reaches into.
func (db *DB) PrunedAuditSegments(ctx context.Context, since time.Time, limit int) ([]coffer.AuditSegment, error) {
	return db.segments(ctx, `WHERE pruned_at <> 0 AND last_time >= $1 ORDER BY last_time, node, first_seq LIMIT $2`,
		micros(since), int64(limit))
}

// AddAuditSegment records a segment written to the archive and read back
// verified; recording one that is there (same node and first seq) again
// is no error when it is the same segment (a resumed run), a conflict
// otherwise. It writes only while lease is the archive job's lease.
func (db *DB) AddAuditSegment(ctx context.Context, lease coffer.JobLease, now time.Time, s coffer.AuditSegment) error {
	return db.inTx(ctx, func(q querier) error {
		if err := fenced(ctx, q, lease, now); err != nil {
			return err
		}
		n, err := q.exec(ctx, `INSERT INTO audit_segments (`+auditSegmentCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0) ON CONFLICT (node, first_seq) DO NOTHING`,
			s.Node, int64(s.FirstSeq), int64(s.LastSeq), s.PrevHash, s.HeadHash, // #nosec G115 -- seq < 2^63
			micros(s.FirstTime), micros(s.LastTime), s.Bytes, micros(s.Verified))
		if err != nil {
			return fmt.Errorf("store: add audit segment: %w", err)
		}
		if n == 1 {
			return nil
		}
		var last int64
		var head string
		if err := q.queryRow(ctx, `SELECT last_seq, head_hash FROM audit_segments WHERE node = $1 AND first_seq = $2`,
			s.Node, int64(s.FirstSeq)).Scan(&last, &head); err != nil { // #nosec G115 -- seq < 2^63
			return fmt.Errorf("store: add audit segment: %w", err)
		}
		if uint64(last) != s.LastSeq || head != s.HeadHash { // #nosec G115 -- stored from uint64
			return coffer.Errorf(coffer.ECONFLICT, "another audit segment of node %s starts at seq %d", s.Node, s.FirstSeq)
		}
		return nil
	})
}

// PruneAuditSegment deletes the events of a recorded, not yet pruned
// segment and marks it pruned, in one transaction, while lease is the
// archive job's lease. It returns how many events it deleted (0 when the
// segment was pruned already).
func (db *DB) PruneAuditSegment(ctx context.Context, lease coffer.JobLease, now time.Time, node string, firstSeq uint64) (int64, error) {
	var n int64
	err := db.inTx(ctx, func(q querier) error {
		if err := fenced(ctx, q, lease, now); err != nil {
			return err
		}
		var last, pruned int64
		if err := q.queryRow(ctx, `SELECT last_seq, pruned_at FROM audit_segments WHERE node = $1 AND first_seq = $2`,
			node, int64(firstSeq)).Scan(&last, &pruned); err != nil { // #nosec G115 -- seq < 2^63
			return fmt.Errorf("store: prune audit segment: %w", mapErr(err))
		}
		if pruned != 0 {
			return nil
		}
		// Events of a chain written before the compact form are in
		// audit_events, the later ones in audit_log.
		for _, table := range []string{"audit_events", "audit_log"} {
			k, err := q.exec(ctx, `DELETE FROM `+table+` WHERE node = $1 AND seq >= $2 AND seq <= $3`,
				node, int64(firstSeq), last) // #nosec G115 -- seq < 2^63
			if err != nil {
				return fmt.Errorf("store: prune audit segment: %w", err)
			}
			n += k
		}
		if _, err := q.exec(ctx, `UPDATE audit_segments SET pruned_at = $1 WHERE node = $2 AND first_seq = $3`,
			micros(now), node, int64(firstSeq)); err != nil { // #nosec G115 -- seq < 2^63
			return fmt.Errorf("store: prune audit segment: %w", err)
		}
		return nil
	})
	return n, err
}

// AuditPrunedThrough returns the last seq of node's pruned events and its
// hash (0, "" when none were pruned): segments are pruned in seq order, so
// every event up to it has left the database.
func (db *DB) AuditPrunedThrough(ctx context.Context, node string) (uint64, string, error) {
	rs, err := db.read.query(ctx, `SELECT last_seq, head_hash FROM audit_segments
		WHERE node = $1 AND pruned_at <> 0 ORDER BY last_seq DESC LIMIT 1`, node)
	if err != nil {
		return 0, "", fmt.Errorf("store: audit pruned through: %w", err)
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
		return 0, "", fmt.Errorf("store: audit pruned through: %w", err)
	}
	return uint64(seq), hash, nil // #nosec G115 -- stored from uint64 < 2^63
}
