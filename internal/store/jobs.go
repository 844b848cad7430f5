package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// ErrLeaseLost: a write under a job lease that is no longer held under its
// fencing token (another node took the job, or the lease ran out); the
// domain's coffer.ErrLeaseLost.
var ErrLeaseLost = coffer.ErrLeaseLost

// AcquireLease takes (or renews) the lease of a background job for node
// until now+ttl, in one statement, so two nodes can never both win: the
// portable equivalent of an advisory lock that also survives a crash (the
// lease runs out). It reports false when another node holds an unexpired
// lease. The lease's fencing token grows whenever the lease changes hands
// (a new holder, or node taking it again after it ran out or was
// released) and stays while node renews it in time.
func (db *DB) AcquireLease(ctx context.Context, job, node string, now time.Time, ttl time.Duration) (coffer.JobLease, bool, error) {
	until := now.Add(ttl)
	var fence int64
	err := db.write.queryRow(ctx, `INSERT INTO jobs (name, state, lease_by, lease_until, updated_at, fence)
		VALUES ($1, '', $2, $3, $4, 1)
		ON CONFLICT (name) DO UPDATE SET lease_by = $2, lease_until = $3, updated_at = $4,
			fence = CASE WHEN jobs.lease_by = $2 AND jobs.lease_until >= $4 THEN jobs.fence ELSE jobs.fence + 1 END
		WHERE jobs.lease_until < $4 OR jobs.lease_by = $2
		RETURNING fence`,
		job, node, micros(until), micros(now)).Scan(&fence)
	if errors.Is(mapErr(err), ErrNotFound) {
		return coffer.JobLease{}, false, nil
	}
	if err != nil {
		return coffer.JobLease{}, false, fmt.Errorf("store: acquire lease: %w", mapErr(err))
	}
	return coffer.JobLease{Job: job, Holder: node, Fence: fence, Until: until}, true, nil
}

// ReleaseLease gives up a lease, if it is still held under its token.
func (db *DB) ReleaseLease(ctx context.Context, l coffer.JobLease) error {
	if _, err := db.write.exec(ctx, `UPDATE jobs SET lease_until = 0 WHERE name = $1 AND lease_by = $2 AND fence = $3`,
		l.Job, l.Holder, l.Fence); err != nil {
		return fmt.Errorf("store: release lease: %w", err)
	}
	return nil
}

// fenced checks, inside a write transaction, that l is still the job's
// lease at now, and locks its row until the transaction ends (an UPDATE,
// so on PostgreSQL a node taking the job over waits for this transaction
// and sees its outcome). It returns ErrLeaseLost otherwise.
func fenced(ctx context.Context, q querier, l coffer.JobLease, now time.Time) error {
	n, err := q.exec(ctx, `UPDATE jobs SET updated_at = $1
		WHERE name = $2 AND lease_by = $3 AND fence = $4 AND lease_until > $1`,
		micros(now), l.Job, l.Holder, l.Fence)
	if err != nil {
		return fmt.Errorf("store: job lease: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s (fence %d, holder %s)", ErrLeaseLost, l.Job, l.Fence, l.Holder)
	}
	return nil
}

// CheckLease reports ErrLeaseLost unless l is still the job's lease at now.
func (db *DB) CheckLease(ctx context.Context, l coffer.JobLease, now time.Time) error {
	return db.inTx(ctx, func(q querier) error { return fenced(ctx, q, l, now) })
}

// JobState returns a job's saved progress ("" if none).
func (db *DB) JobState(ctx context.Context, job string) (string, error) {
	var s string
	err := db.read.queryRow(ctx, `SELECT state FROM jobs WHERE name = $1`, job).Scan(&s)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: job state: %w", err)
	}
	return s, nil
}

// SetJobState saves a job's progress, only while l is the job's lease
// (ErrLeaseLost otherwise).
func (db *DB) SetJobState(ctx context.Context, l coffer.JobLease, state string, now time.Time) error {
	n, err := db.write.exec(ctx, `UPDATE jobs SET state = $1, updated_at = $2
		WHERE name = $3 AND lease_by = $4 AND fence = $5 AND lease_until > $2`,
		state, micros(now), l.Job, l.Holder, l.Fence)
	if err != nil {
		return fmt.Errorf("store: set job state: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s (fence %d, holder %s)", ErrLeaseLost, l.Job, l.Fence, l.Holder)
	}
	return nil
}

// ResetJobState sets a job's state whoever holds its lease (to request a
// new run); the lease itself is left alone.
func (db *DB) ResetJobState(ctx context.Context, job, state string, now time.Time) error {
	_, err := db.write.exec(ctx, `INSERT INTO jobs (name, state, lease_by, lease_until, updated_at)
		VALUES ($1, $2, '', 0, $3) ON CONFLICT (name) DO UPDATE SET state = $2, updated_at = $3`,
		job, state, micros(now))
	if err != nil {
		return fmt.Errorf("store: reset job state: %w", err)
	}
	return nil
}

// RecordsAfter returns up to limit sealed records ordered by (collection,
// id) after the given position, for batch jobs.
func (db *DB) RecordsAfter(ctx context.Context, collection, id string, limit int) ([]coffer.SealedRecord, error) {
	rs, err := db.read.query(ctx, `SELECT `+recordCols+` FROM records
		WHERE collection > $1 OR (collection = $1 AND id > $2) ORDER BY collection, id LIMIT $3`,
		collection, id, limit)
	if err != nil {
		return nil, fmt.Errorf("store: records page: %w", err)
	}
	defer rs.Close()
	var out []coffer.SealedRecord
	for rs.Next() {
		r, err := scanRecord(rs)
		if err != nil {
			return nil, fmt.Errorf("store: records page: %w", err)
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// ReplaceValues swaps the sealed values, revision and seal of records in
// one transaction, each only if its values are still old[i], the sealed
// values it was read with (compare-and-swap on their stored encoding: every
// write of a record seals all its values again, under fresh nonces, so
// equal values mean no write in between, and a concurrent update always
// wins over a rewrap). It returns how many were replaced. It writes only
// while l is the rewrap job's lease at now (ErrLeaseLost otherwise:
// fencing).
func (db *DB) ReplaceValues(ctx context.Context, l coffer.JobLease, now time.Time, recs []coffer.SealedRecord, old []map[string][]byte) (int, error) {
	// Encoded before the transaction: on SQLite its closure runs in the
	// one serial write path.
	was := make([][]byte, len(old))
	for i, v := range old {
		var err error
		if was[i], err = encodeValues(v); err != nil {
			return 0, err
		}
	}
	n := 0
	err := db.inTx(ctx, func(q querier) error {
		n = 0
		if err := fenced(ctx, q, l, now); err != nil {
			return err
		}
		for i, r := range recs {
			vals, err := encodeValues(r.Values)
			if err != nil {
				return err
			}
			k, err := q.exec(ctx, `UPDATE records SET values_blob = $1, revision = $2, meta_seal = $3
				WHERE collection = $4 AND id = $5 AND values_blob = $6`,
				vals, revision(r.Revision), nullBytes(r.Seal), r.Collection, r.ID, was[i])
			if err != nil {
				return fmt.Errorf("store: replace values: %w", err)
			}
			n += int(k)
		}
		return nil
	})
	return n, err
}

// EncodedValues returns the stored encoding of a record's values, as the
// records table holds it (for tests that write rows themselves).
func EncodedValues(v map[string][]byte) ([]byte, error) { return encodeValues(v) }

// PurgeExpired deletes up to limit records whose expiry has passed, with
// their index entries, in one transaction; it returns how many went. It
// deletes only while l is the purge job's lease at now (ErrLeaseLost
// otherwise: fencing).
func (db *DB) PurgeExpired(ctx context.Context, l coffer.JobLease, now time.Time, limit int) (int64, error) {
	var total int64
	err := db.inTx(ctx, func(q querier) error {
		total = 0
		if err := fenced(ctx, q, l, now); err != nil {
			return err
		}
		rs, err := q.query(ctx, `SELECT collection, id FROM records WHERE expires_at IS NOT NULL AND expires_at <= $1
			ORDER BY expires_at LIMIT $2`, micros(now), limit)
		if err != nil {
			return fmt.Errorf("store: purge: %w", err)
		}
		var keys [][2]string
		for rs.Next() {
			var c, id string
			if err := rs.Scan(&c, &id); err != nil {
				rs.Close()
				return fmt.Errorf("store: purge: %w", err)
			}
			keys = append(keys, [2]string{c, id})
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return fmt.Errorf("store: purge: %w", err)
		}
		for _, k := range keys {
			if _, err := q.exec(ctx, `DELETE FROM record_index WHERE collection = $1 AND record_id = $2`, k[0], k[1]); err != nil {
				return fmt.Errorf("store: purge index: %w", err)
			}
			n, err := q.exec(ctx, `DELETE FROM records WHERE collection = $1 AND id = $2`, k[0], k[1])
			if err != nil {
				return fmt.Errorf("store: purge: %w", err)
			}
			total += n
		}
		return nil
	})
	return total, err
}

// JobInfo is a background job's row: its saved state, who holds its lease
// and until when, and when it last changed.
type JobInfo struct {
	State      string
	LeaseBy    string
	LeaseUntil time.Time
	UpdatedAt  time.Time
}

// Leased reports whether a node holds the job's lease at now.
func (j JobInfo) Leased(now time.Time) bool { return j.LeaseBy != "" && j.LeaseUntil.After(now) }

// JobInfo returns a job's row (the zero JobInfo if it never ran).
func (db *DB) JobInfo(ctx context.Context, job string) (JobInfo, error) {
	var (
		j             JobInfo
		until, update int64
	)
	err := db.read.queryRow(ctx, `SELECT state, lease_by, lease_until, updated_at FROM jobs WHERE name = $1`, job).
		Scan(&j.State, &j.LeaseBy, &until, &update)
	if errors.Is(err, ErrNotFound) {
		return JobInfo{}, nil
	}
	if err != nil {
		return JobInfo{}, fmt.Errorf("store: job info: %w", err)
	}
	if until > 0 {
		j.LeaseUntil = fromMicros(until)
	}
	if update > 0 {
		j.UpdatedAt = fromMicros(update)
	}
	return j, nil
}

// RecordsThrough counts the records at or before (collection, id) in the
// order batch jobs walk them (RecordsAfter), and all records: how far such
// a job has come.
func (db *DB) RecordsThrough(ctx context.Context, collection, id string) (through, total int64, err error) {
	err = db.read.queryRow(ctx, `SELECT COUNT(*),
		COALESCE(SUM(CASE WHEN collection < $1 OR (collection = $1 AND id <= $2) THEN 1 ELSE 0 END), 0) FROM records`,
		collection, id).Scan(&total, &through)
	if err != nil {
		return 0, 0, fmt.Errorf("store: count records: %w", err)
	}
	return through, total, nil
}

// IndexEntryCounts counts the blind index entries of a field, and those of
// them filed under a key version below version (what a reindex has left).
func (db *DB) IndexEntryCounts(ctx context.Context, collection, field string, version uint32) (stale, total int64, err error) {
	err = db.read.queryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN version < $3 THEN 1 ELSE 0 END), 0)
		FROM record_index WHERE collection = $1 AND field = $2`, collection, field, int64(version)).Scan(&total, &stale)
	if err != nil {
		return 0, 0, fmt.Errorf("store: count index entries: %w", err)
	}
	return stale, total, nil
}
