package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/detect"
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
		return q.queryRow(ctx, `INSERT INTO detect_counts (key, window_start, count) VALUES ($1, $2, $3)
			ON CONFLICT (key, window_start) DO UPDATE SET count = detect_counts.count + $3 RETURNING count`,
			key, micros(window), int64(n)).Scan(&total)
	})
	if err != nil {
		return 0, fmt.Errorf("store: add count: %w", err)
	}
	if total == int64(n) && window.Second() == 0 && window.Minute()%10 == 0 {
		// The first count of a fresh 10-minute boundary window prunes the day-old ones.
		_, _ = db.write.exec(ctx, `DELETE FROM detect_counts WHERE window_start < $1`, micros(window.Add(-24*time.Hour)))
	}
	return int(total), nil
}

// AddCounts applies several increments in one transaction (one group
// commit on SQLite) and returns each new total in order. Rows are touched
// in key order, so concurrent nodes on PostgreSQL never deadlock.
func (db *DB) AddCounts(ctx context.Context, adds []detect.CountAdd) ([]int, error) {
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
	prune := time.Time{}
	err := db.inTx(ctx, func(q querier) error {
		for _, i := range order {
			a := adds[i]
			var total int64
			if err := q.queryRow(ctx, `INSERT INTO detect_counts (key, window_start, count) VALUES ($1, $2, $3)
				ON CONFLICT (key, window_start) DO UPDATE SET count = detect_counts.count + $3 RETURNING count`,
				a.Key, micros(a.Window), int64(a.N)).Scan(&total); err != nil {
				return err
			}
			totals[i] = int(total)
			if total == int64(a.N) && a.Window.Second() == 0 && a.Window.Minute()%10 == 0 && a.Window.After(prune) {
				prune = a.Window
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: add counts: %w", err)
	}
	if !prune.IsZero() {
		// The first count of a fresh 10-minute boundary window prunes the day-old ones.
		_, _ = db.write.exec(ctx, `DELETE FROM detect_counts WHERE window_start < $1`, micros(prune.Add(-24*time.Hour)))
	}
	return totals, nil
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
