package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrNoNotifications: the store cannot announce changes (SQLite, one
// node: nothing to follow).
var ErrNoNotifications = errors.New("store: change notifications need PostgreSQL")

// ListenChanges follows the changes other nodes make to what nodes cache
// (policy, revocations, suspensions, clients, users, collections, keys):
// on its own connection it LISTENs on this schema's channel, calls ready
// once listening, then fn with the changed table's name for every change
// committed, by any node or command, until ctx ends or the connection
// fails; it returns the error. Changes committed while it was not
// listening are not replayed: after ready, the caller reloads everything.
func (db *DB) ListenChanges(ctx context.Context, ready func(), fn func(table string)) error {
	if db.pool == nil {
		return ErrNoNotifications
	}
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("store: listen: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	// The channel the triggers notify (migration 15): a fixed prefix and
	// the schema's name, cut to an identifier's 63 bytes; quoted.
	var channel string
	if err := conn.QueryRow(ctx, `SELECT left('coffer_changes_' || current_schema(), 63)`).Scan(&channel); err != nil {
		return fmt.Errorf("store: listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("store: listen: %w", err)
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("store: listen: %w", err)
		}
		fn(n.Payload)
	}
}
