package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

const nodeCols = `node, instance, host, version, schema_version, started_at, heartbeat_at, lease_until`

// AcquireNodeLease makes n.Instance the holder of node id n.ID until
// n.LeaseUntil, in one statement: it succeeds when the id is new, its
// lease has run out (a node that stopped or died), or n.Instance holds it
// already. It reports false, changing nothing, while another instance's
// lease runs at n.HeartbeatAt.
func (db *DB) AcquireNodeLease(ctx context.Context, n coffer.Node) (bool, error) {
	c, err := db.write.exec(ctx, `INSERT INTO nodes (`+nodeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (node) DO UPDATE SET instance = $2, host = $3, version = $4, schema_version = $5,
			started_at = $6, heartbeat_at = $7, lease_until = $8
		WHERE nodes.lease_until <= $7 OR nodes.instance = $2`,
		n.ID, n.Instance, n.Host, n.Version, n.SchemaVersion, micros(n.StartedAt), micros(n.HeartbeatAt), micros(n.LeaseUntil))
	if err != nil {
		return false, fmt.Errorf("store: acquire node lease: %w", err)
	}
	return c == 1, nil
}

// RenewNodeLease records a heartbeat of node held by instance and extends
// its lease to until. It reports false when instance no longer holds it,
// or released it (a heartbeat racing a clean stop never holds the id on).
func (db *DB) RenewNodeLease(ctx context.Context, node, instance string, now, until time.Time) (bool, error) {
	c, err := db.write.exec(ctx, `UPDATE nodes SET heartbeat_at = $1, lease_until = $2
		WHERE node = $3 AND instance = $4 AND lease_until > 0`,
		micros(now), micros(until), node, instance)
	if err != nil {
		return false, fmt.Errorf("store: renew node lease: %w", err)
	}
	return c == 1, nil
}

// ReleaseNodeLease ends instance's lease of node at once (a clean stop),
// keeping its row.
func (db *DB) ReleaseNodeLease(ctx context.Context, node, instance string) error {
	if _, err := db.write.exec(ctx, `UPDATE nodes SET lease_until = 0 WHERE node = $1 AND instance = $2`, node, instance); err != nil {
		return fmt.Errorf("store: release node lease: %w", err)
	}
	return nil
}

// Node returns the row of node id, or an error wrapping ErrNotFound.
func (db *DB) Node(ctx context.Context, id string) (coffer.Node, error) {
	n, err := scanNode(db.write.queryRow(ctx, `SELECT `+nodeCols+` FROM nodes WHERE node = $1`, id))
	if errors.Is(err, ErrNotFound) {
		return coffer.Node{}, notFound("node")
	}
	if err != nil {
		return coffer.Node{}, fmt.Errorf("store: node: %w", err)
	}
	return n, nil
}

// Nodes returns every node row, by id.
func (db *DB) Nodes(ctx context.Context) ([]coffer.Node, error) {
	rs, err := db.read.query(ctx, `SELECT `+nodeCols+` FROM nodes ORDER BY node`)
	if err != nil {
		return nil, fmt.Errorf("store: nodes: %w", err)
	}
	defer rs.Close()
	var out []coffer.Node
	for rs.Next() {
		n, err := scanNode(rs)
		if err != nil {
			return nil, fmt.Errorf("store: nodes: %w", err)
		}
		out = append(out, n)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("store: nodes: %w", err)
	}
	return out, nil
}

func scanNode(r interface{ Scan(...any) error }) (coffer.Node, error) {
	var (
		n                 coffer.Node
		start, beat, till int64
	)
	if err := r.Scan(&n.ID, &n.Instance, &n.Host, &n.Version, &n.SchemaVersion, &start, &beat, &till); err != nil {
		return coffer.Node{}, mapErr(err)
	}
	n.StartedAt, n.HeartbeatAt, n.LeaseUntil = fromMicros(start), fromMicros(beat), fromMicros(till)
	return n, nil
}
