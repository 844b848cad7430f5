package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// InsertSecurityEvent stores one security event.
func (db *DB) InsertSecurityEvent(ctx context.Context, e coffer.SecurityEvent) error {
	detail, err := json.Marshal(e.Detail)
	if err != nil {
		return fmt.Errorf("store: encode security event: %w", err)
	}
	_, err = db.write.exec(ctx, `INSERT INTO security_events (id, time, kind, severity, principal, detail)
		VALUES ($1, $2, $3, $4, $5, $6)`, e.ID, micros(e.Time), e.Kind, e.Severity, e.Principal, string(detail))
	if err != nil {
		return fmt.Errorf("store: insert security event: %w", err)
	}
	return nil
}

// SecurityEvents returns events at or after since, of kind ("" = all),
// oldest first, at most limit.
func (db *DB) SecurityEvents(ctx context.Context, since time.Time, kind string, limit int) ([]coffer.SecurityEvent, error) {
	rs, err := db.read.query(ctx, `SELECT id, time, kind, severity, principal, detail FROM security_events
		WHERE time >= $1 AND ($2 = '' OR kind = $2) ORDER BY time, id LIMIT $3`, micros(since), kind, limit)
	if err != nil {
		return nil, fmt.Errorf("store: security events: %w", err)
	}
	defer rs.Close()
	var out []coffer.SecurityEvent
	for rs.Next() {
		var (
			e      coffer.SecurityEvent
			at     int64
			detail string
		)
		if err := rs.Scan(&e.ID, &at, &e.Kind, &e.Severity, &e.Principal, &detail); err != nil {
			return nil, fmt.Errorf("store: security events: %w", err)
		}
		e.Time = fromMicros(at)
		if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
			return nil, fmt.Errorf("store: decode security event: %w", err)
		}
		out = append(out, e)
	}
	return out, rs.Err()
}

// AddCount adds n to the shared counter of (key, window) and returns the
// new total; old windows are pruned now and then.
func (db *DB) AddCount(ctx context.Context, key string, window time.Time, n int) (int, error) {
	var total int64
	// Through inTx: on SQLite the increments of concurrent requests share
	// the group commit's one sync instead of one each.
	err := db.inTx(ctx, func(q querier) error {
		var err error
		total, err = addCount(ctx, q, coffer.CountAdd{Key: key, Window: window, N: n})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: add count: %w", err)
	}
	if total == int64(n) {
		db.pruneCounts(ctx, window)
	}
	return int(total), nil
}

// AddCounts applies several increments in one transaction (one group
// commit on SQLite) and returns each new total in order, summed from the
// increment's Since where it is before its Window. Rows are touched in key
// order, so concurrent nodes on PostgreSQL never deadlock.
func (db *DB) AddCounts(ctx context.Context, adds []coffer.CountAdd) ([]int, error) {
	order := make([]int, len(adds))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		x, y := adds[order[a]], adds[order[b]]
		if x.Key != y.Key {
			return x.Key < y.Key
		}
		return x.Window.Before(y.Window)
	})
	totals := make([]int, len(adds))
	var fresh time.Time
	err := db.inTx(ctx, func(q querier) error {
		for _, i := range order {
			total, err := addCount(ctx, q, adds[i])
			if err != nil {
				return err
			}
			totals[i] = int(total)
			if total == int64(adds[i].N) && adds[i].Window.After(fresh) {
				fresh = adds[i].Window
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: add counts: %w", err)
	}
	if !fresh.IsZero() {
		db.pruneCounts(ctx, fresh)
	}
	return totals, nil
}

// addCount is one increment: the upsert of (Key, Window), whose row lock
// orders concurrent increments of one counter on every node, then the sum
// of the key's earlier windows from Since, if any.
func addCount(ctx context.Context, q querier, a coffer.CountAdd) (int64, error) {
	var total, earlier int64
	if err := q.queryRow(ctx, `INSERT INTO detect_counts (key, window_start, count) VALUES ($1, $2, $3)
		ON CONFLICT (key, window_start) DO UPDATE SET count = detect_counts.count + $3 RETURNING count`,
		a.Key, micros(a.Window), int64(a.N)).Scan(&total); err != nil {
		return 0, err
	}
	if a.Since.IsZero() || !a.Since.Before(a.Window) {
		return total, nil
	}
	if err := q.queryRow(ctx, `SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM detect_counts
		WHERE key = $1 AND window_start >= $2 AND window_start < $3`,
		a.Key, micros(a.Since), micros(a.Window)).Scan(&earlier); err != nil {
		return 0, err
	}
	return total + earlier, nil
}

// pruneCounts deletes the counters whose window started more than a day
// before window, at most once per ten minutes of window time per node.
func (db *DB) pruneCounts(ctx context.Context, window time.Time) {
	mark := window.Truncate(10 * time.Minute).UnixMicro()
	if last := db.countsPruned.Load(); mark <= last || !db.countsPruned.CompareAndSwap(last, mark) {
		return
	}
	_, _ = db.write.exec(ctx, `DELETE FROM detect_counts WHERE window_start < $1`, micros(window.Add(-24*time.Hour)))
}

// Counts returns the counters of key whose window starts at or after since
// and before before, oldest first, as increments (Key, Window, N).
func (db *DB) Counts(ctx context.Context, key string, since, before time.Time) ([]coffer.CountAdd, error) {
	rs, err := db.read.query(ctx, `SELECT window_start, count FROM detect_counts
		WHERE key = $1 AND window_start >= $2 AND window_start < $3 ORDER BY window_start`, key, micros(since), micros(before))
	if err != nil {
		return nil, fmt.Errorf("store: counts: %w", err)
	}
	defer rs.Close()
	var out []coffer.CountAdd
	for rs.Next() {
		var at, n int64
		if err := rs.Scan(&at, &n); err != nil {
			return nil, fmt.Errorf("store: counts: %w", err)
		}
		out = append(out, coffer.CountAdd{Key: key, Window: fromMicros(at), N: int(n)})
	}
	return out, rs.Err()
}

// SuspendPrincipal creates or replaces a suspension.
func (db *DB) SuspendPrincipal(ctx context.Context, id string, until time.Time, reason string) error {
	_, err := db.write.exec(ctx, `INSERT INTO suspensions (principal, until, reason) VALUES ($1, $2, $3)
		ON CONFLICT (principal) DO UPDATE SET until = $2, reason = $3`, id, micros(until), reason)
	if err != nil {
		return fmt.Errorf("store: suspend principal: %w", err)
	}
	return nil
}

// Suspensions returns every stored suspension (expired ones included).
func (db *DB) Suspensions(ctx context.Context) ([]coffer.Suspension, error) {
	rs, err := db.read.query(ctx, `SELECT principal, until, reason FROM suspensions`)
	if err != nil {
		return nil, fmt.Errorf("store: suspensions: %w", err)
	}
	defer rs.Close()
	var out []coffer.Suspension
	for rs.Next() {
		var (
			s  coffer.Suspension
			at int64
		)
		if err := rs.Scan(&s.Principal, &at, &s.Reason); err != nil {
			return nil, fmt.Errorf("store: suspensions: %w", err)
		}
		s.Until = fromMicros(at)
		out = append(out, s)
	}
	return out, rs.Err()
}
