package app

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/auditarchive"
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
		return struct{}{}, auditadmin.Tail(ctx, c.db, w, c.opts.Logger, since, follow)
	})
	return err
}

// ArchiveAudit archives cfg's sealed audit history to audit.archive and
// prunes from the database what is older than before (audit.retain_in_db
// when negative), as the background job does, under the same job lease;
// the run is audited on the offline chain.
func ArchiveAudit(ctx context.Context, cfg *config.Config, before time.Duration) (auditarchive.Result, error) {
	return offline(ctx, cfg, Options{}, func(c *components) (auditarchive.Result, error) {
		if before < 0 {
			before = cfg.Audit.RetainInDB.Duration
		}
		arch, err := auditadmin.NewArchiver(ctx, auditadmin.ArchiveConfig{DB: c.db, Keys: c.keys, Audit: cfg.Audit,
			Holder: cfg.Node + auditadmin.OfflineNodeSuffix, Now: c.opts.Now, Logger: c.opts.Logger})
		if err != nil {
			return auditarchive.Result{}, err
		}
		var res auditarchive.Result
		err = c.audited().Run(ctx, "archive", "audit", func() error {
			var err error
			res, err = arch.Run(ctx, c.opts.Now().Add(-before))
			return err
		})
		return res, err
	})
}

// VerifyAuditArchive walks cfg's audit archive and database as one chain
// per node (auditarchive.Verify): every segment boundary, every checkpoint
// signature, nothing missing between them.
func VerifyAuditArchive(ctx context.Context, cfg *config.Config, opt auditarchive.VerifyOptions) (auditarchive.Report, error) {
	return offline(ctx, cfg, Options{}, func(c *components) (auditarchive.Report, error) {
		return auditadmin.VerifyArchive(ctx, c.db, c.keys, cfg.Audit, opt)
	})
}

// SearchAuditArchive prints, as JSON lines, the archived events in dir
// matching q; it reads the segment files only (no database, no keys).
func SearchAuditArchive(ctx context.Context, dir string, q auditarchive.Query, w io.Writer) (int, error) {
	n := 0
	err := auditarchive.Search(ctx, auditarchive.FileArchive{Dir: dir}, q, func(e audit.Event) error {
		b, err := e.AppendJSON(nil)
		if err != nil {
			return err
		}
		n++
		_, err = w.Write(append(b, '\n'))
		return err
	})
	return n, err
}
