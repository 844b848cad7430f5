package app

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/backup"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/keyadmin"
	"github.com/cofferhq/coffer/internal/lifecycle"
)

// offline opens cfg's components for an administrative command (see
// Options.Offline), runs fn on them and closes them.
func offline[T any](ctx context.Context, cfg *config.Config, o Options, fn func(*components) (T, error)) (T, error) {
	o.Offline = true
	c, err := open(ctx, cfg, o)
	if err != nil {
		var zero T
		return zero, err
	}
	defer c.Close()
	return fn(c)
}

// audited is c's offline audit chain (NODE/offline).
func (c *components) audited() auditadmin.Offline {
	return auditadmin.Offline{DB: c.db, Keys: c.keys, Audit: c.cfg.Audit, Node: c.cfg.Node, Now: c.opts.Now, Logger: c.opts.Logger}
}

// offlineKeys is the key administration of an offline command.
func (c *components) offlineKeys() *keyadmin.Admin {
	return keyadmin.New(keyadmin.Config{Store: c.db, Keys: c.keys, SigningKeys: c.identity,
		Jobs: lifecycle.New(lifecycle.Config{Store: c.db, Keys: c.keys, Node: c.cfg.Node}),
		Now:  c.opts.Now, Logger: c.opts.Logger, RetireAfter: c.opts.RetireAfter, Audited: c.audited().Run})
}

// Keys opens cfg's key administration offline (`coffer keys …` with
// --data-dir), for fn: rotations, retirements, signing key revocations,
// each audited on the offline chain.
func Keys[T any](ctx context.Context, cfg *config.Config, fn func(*keyadmin.Admin) (T, error)) (T, error) {
	return offline(ctx, cfg, Options{}, func(c *components) (T, error) { return fn(c.offlineKeys()) })
}

// RotateRoot moves every data key of cfg's store to the root key in
// newKeyFile (see keyadmin.RotateRoot).
func RotateRoot(ctx context.Context, cfg *config.Config, newKeyFile string) (keyadmin.RootRotation, error) {
	return keyadmin.RotateRoot(ctx, cfg, newKeyFile, func(ctx context.Context) (*keyadmin.Admin, func(), error) {
		c, err := open(ctx, cfg, Options{Offline: true})
		if err != nil {
			return nil, nil, err
		}
		return c.offlineKeys(), c.Close, nil
	})
}

// Backup writes an encrypted backup of cfg's store to out while nodes may
// keep serving (see backup.Backup), audited on the offline chain.
func Backup(ctx context.Context, cfg *config.Config, out string) (backup.BackupResult, error) {
	return backup.BackupDeployment(ctx, cfg, out)
}

// VerifyAudit checks every audit chain in cfg's store offline, compares the
// store with every copy the configuration names (the file sink's file
// set, the witness), and returns how many events the store holds intact.
// Anything found is an audit.Findings error naming each node and seq.
func VerifyAudit(ctx context.Context, cfg *config.Config) (int, error) {
	return VerifyAuditAgainst(ctx, cfg, "")
}

// VerifyAuditAgainst is VerifyAudit with witness (an https:// URL or a
// file path) as the witness instead of audit.witness, when not empty (see
// auditadmin.Copies).
func VerifyAuditAgainst(ctx context.Context, cfg *config.Config, witnessTarget string) (int, error) {
	copies, err := auditadmin.Copies(ctx, cfg.Audit, cfg.Node, witnessTarget)
	if err != nil {
		return 0, err
	}
	return offline(ctx, cfg, Options{}, func(c *components) (int, error) {
		return auditadmin.VerifyStore(ctx, c.db, c.keys, copies)
	})
}

// TailAudit prints audit events from since on (see auditadmin.Tail). It
// reads the store directly (it needs the data directory and the root
// key), so it works while the server is down too.
func TailAudit(ctx context.Context, cfg *config.Config, w io.Writer, log *slog.Logger, since time.Time, follow bool) error {
	_, err := offline(ctx, cfg, Options{Logger: log}, func(c *components) (struct{}, error) {
		return struct{}{}, auditadmin.Tail(ctx, c.db, c.keys, w, c.opts.Logger, since, follow)
	})
	return err
}

// AuditOffline runs fn on cfg's offline audit chain and store (coffer audit archive, verify).
func AuditOffline[T any](ctx context.Context, cfg *config.Config, fn func(auditadmin.Offline) (T, error)) (T, error) {
	return offline(ctx, cfg, Options{}, func(c *components) (T, error) { return fn(c.audited()) })
}
