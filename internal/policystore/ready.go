package policystore

import (
	"context"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// ReadyStore is a store that migrates its schema (store.DB).
type ReadyStore interface {
	RewriteStore
	Migrate(ctx context.Context) error
	Pending(ctx context.Context) (bool, error)
}

// Ready makes sure a store speaks this version: with migrate, it applies
// the pending migrations and rewrites a stored policy written for an older
// meaning of the policy language (each change logged, for review);
// without, it refuses a schema that is out of date
// (coffer.ErrPendingMigrations) and, unless offline, a policy still to be
// rewritten (ErrRewritePending): serving it would silently change what it
// grants.
func Ready(ctx context.Context, db ReadyStore, migrate, offline bool, now time.Time, log *slog.Logger) error {
	if migrate {
		if err := db.Migrate(ctx); err != nil {
			return err
		}
		changes, err := Rewrite(ctx, db, now)
		for _, ch := range changes {
			log.Warn("stored policy rewritten for this version; review it", "rewrite", ch.Rewrite, "rule", ch.Path, "change", ch.Message)
		}
		return err
	}
	if pending, err := db.Pending(ctx); err != nil || pending {
		if err == nil {
			err = coffer.ErrPendingMigrations
		}
		return err
	}
	if offline {
		return nil
	}
	if pending, err := RewritePending(ctx, db); err != nil || pending {
		if err == nil {
			err = ErrRewritePending
		}
		return err
	}
	return nil
}
