package backup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/crypto/unseal"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/pki"
	"github.com/cofferhq/coffer/internal/policystore"
	"github.com/cofferhq/coffer/internal/progress"
	"github.com/cofferhq/coffer/internal/store"
)

// ErrWrongRootKey: the root key given to Restore is not the one the backup
// was written under.
var ErrWrongRootKey = errors.New("wrong root key: the backup was not written under this root key")

// BackupResult is what Backup wrote.
type BackupResult struct {
	File  string
	Bytes int64
}

// Source is an opened deployment to back up.
type Source struct {
	Provider keyprovider.Provider
	DB       *store.DB
	Keys     *keyring.Keyring
	// Audited runs the backup between its audit events
	// (auditadmin.Offline.Run).
	Audited func(ctx context.Context, action, resource string, op func() error) error
}

// BackupDeployment writes an encrypted backup of cfg's store to out while
// nodes may keep serving (see Backup), audited on cfg's offline chain. It
// opens the root key provider, the store (whose schema must be current)
// and the keyring itself, and closes them.
func BackupDeployment(ctx context.Context, cfg *config.Config, out string) (BackupResult, error) {
	res := BackupResult{File: out}
	p, err := unseal.Open(cfg)
	if err != nil {
		return res, err
	}
	if cl, ok := p.(io.Closer); ok {
		defer cl.Close()
	}
	db, err := store.Open(ctx, cfg.StoreDSN(), store.Options{})
	if err != nil {
		return res, err
	}
	defer db.Close()
	if pending, err := db.Pending(ctx); err != nil {
		return res, err
	} else if pending {
		return res, store.ErrPendingMigrations
	}
	kr := keyring.New(p, db, keyring.Options{})
	defer kr.Close()
	audited := auditadmin.Offline{DB: db, Keys: kr, Audit: cfg.Audit, Node: cfg.Node, Now: time.Now}
	return Backup(ctx, Source{Provider: p, DB: db, Keys: kr, Audited: audited.Run}, out)
}

// Backup writes an encrypted backup of src's store to out while nodes may
// keep serving: one consistent snapshot, read without blocking writers. It
// writes out.tmp (0600), syncs it and renames it over out, so out is always
// a whole backup. The backup's data key is wrapped by the root key, which
// the backup does not hold: keep the root key (and, after a root key
// rotation, the old one for older backups). Subject keys are never in a
// backup, not even wrapped (see store.DB.Export): erasing a subject is
// final for backups too. Restore brings back the values of subjects not
// erased by taking their keys from the live deployment
// (RestoreOptions.SubjectKeysFromDataDir), never from the backup.
func Backup(ctx context.Context, src Source, out string) (BackupResult, error) {
	res := BackupResult{File: out}
	// A backup under a root key that does not open the store's keys could
	// never be restored: check first.
	if err := CheckRootKey(ctx, src.Keys, src.DB); err != nil {
		return res, err
	}
	// A backup reads every stored value: audited like the key commands,
	// on the offline chain (no event, no backup).
	err := src.Audited(ctx, "backup", "deployment", func() error {
		total, err := src.DB.ExportRows(ctx)
		if err != nil {
			return err
		}
		return writeBackup(ctx, src.Provider, &countingExporter{DB: src.DB, total: total, fn: progress.Of(ctx)}, out)
	})
	if err != nil {
		return res, err
	}
	if fi, err := os.Stat(out); err == nil {
		res.Bytes = fi.Size()
	}
	return res, nil
}

// writeBackup writes db's backup under p to out, through a temporary file
// renamed into place once synced.
func writeBackup(ctx context.Context, p keyprovider.Provider, db Exporter, out string) error {
	tmp := out + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- the operator names the backup file
	if err != nil {
		return fmt.Errorf("backup file: %w", err)
	}
	werr := Write(ctx, f, p, db, rand.Reader)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, out)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return werr
	}
	syncDir(filepath.Dir(out))
	return nil
}

// CheckRootKey proves that kr's root key opens the check key of db, a
// store that must have one.
func CheckRootKey(ctx context.Context, kr *keyring.Keyring, db *store.DB) error {
	rows, err := db.DataKeys(ctx, keyring.RootCheckKeyID)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return errors.New("the store has no root key check: it was never initialised")
	}
	err = kr.Check(ctx)
	if errors.Is(err, keyring.ErrWrongRootKey) {
		return errors.New("root key: this is not the root key this deployment was initialised with")
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil { // #nosec G304 -- a directory the operator named
		_ = d.Sync()
		_ = d.Close()
	}
}

// RestoreOptions are the inputs of Restore.
type RestoreOptions struct {
	// DataDir is the new deployment's directory: absent or empty.
	DataDir string
	// In is the backup file.
	In string
	// RootKeyFile holds the root key the backup was written under (mode
	// 0600); it is copied into DataDir. Leave it empty for a backup of a
	// deployment whose root key is split into shares (provider shamir):
	// give RootKeyCheckFile and UnsealShares instead.
	RootKeyFile string
	// RootKeyCheckFile is the shamir deployment's check blob
	// (root-key.check); it is copied into DataDir, and the restored
	// deployment starts sealed, as the original did.
	RootKeyCheckFile string
	// UnsealShares are enough of that deployment's root key shares to
	// open the backup; they are never written anywhere.
	UnsealShares []string
	// DatabaseURL, if set, restores into that (empty) PostgreSQL database
	// instead of SQLite in DataDir.
	DatabaseURL string
	// SubjectKeysFromDataDir names a deployment under the same root key
	// (normally the live one, which may be serving meanwhile) to take the
	// subject keys from: a backup holds none. Its store, found through
	// its config file (the environment does not apply to it), is only
	// ever read. See Restore.
	SubjectKeysFromDataDir string
	// SubjectKeysFromDatabaseURL names that deployment's PostgreSQL
	// database directly, or overrides the one SubjectKeysFromDataDir's
	// config names.
	SubjectKeysFromDatabaseURL string
	// Listen is written to the config (default 127.0.0.1:8443).
	Listen string
	// Hosts are extra DNS names or IPs for the server certificate.
	Hosts []string
	Rand  io.Reader
	Now   func() time.Time
}

// RestoreResult says where the restored deployment is and, with a
// subject-key source, what came back from it.
type RestoreResult struct {
	URL    string `json:"url"`
	CACert string `json:"ca_cert"`
	// SubjectKeysRestored counts the subject keys copied, wrapped, from
	// the source: their subjects' values read again.
	SubjectKeysRestored int `json:"subject_keys_restored"`
	// SubjectKeysErased counts the backup's subjects the source has
	// erased: their keys stay destroyed.
	SubjectKeysErased int `json:"subject_keys_erased"`
	// SubjectKeysMissing counts the backup's subjects the source has no
	// key of at all: their keys stay destroyed too.
	SubjectKeysMissing int `json:"subject_keys_missing"`
	// IndexEntriesAdded counts the blind index entries filed for the
	// records of the restored subjects (a backup leaves them out).
	IndexEntriesAdded int `json:"index_entries_added"`
	// SubjectValuesUnreadable counts values of restored subjects that
	// stay unreadable because their key version is retired in the source.
	SubjectValuesUnreadable int `json:"subject_values_unreadable"`
	// PolicyChanges lists what the rewrite of a policy stored by an
	// older version changed (see app.Migrate), for review.
	PolicyChanges []string `json:"policy_changes,omitempty"`
}

// Restore makes a new deployment in opts.DataDir from a backup: the
// directory (0700), its config, the root key copied in (0600), a fresh CA
// and server certificate (service clients must trust the new CA; client
// certificates of the old one are not accepted), a migrated store and every
// row of the backup, verified before anything is committed. It then checks
// that the root key opens the restored keys. A root key other than the
// backup's fails with ErrWrongRootKey; any failure removes what Restore
// made, so the directory is left as it was (absent or empty), and a
// PostgreSQL database it imported into is emptied again. Clients,
// users, policies and the audit log come back as they were, and the
// restore itself is recorded on the new deployment's offline audit chain
// (action "restore"): if it cannot be, nothing is restored.
//
// Subject-bound values come back only with a subject-key source
// (SubjectKeysFromDataDir or SubjectKeysFromDatabaseURL), since a backup
// holds every subject key as a destroyed tombstone. The source is opened
// read-only before anything is made and must be initialised under the
// same root key (else ErrSubjectKeySourceRootKey) at this binary's schema.
// Once the backup's rows are in and verified, each tombstone is replaced
// by the source's versions of that key, copied wrapped, as they are
// there: a subject the source erased (or never had) stays erased. The
// restored keys must unwrap under the root key, and the blind index
// entries the backup left out are filed again for their records; a value
// they do not open means the source is not the backup's deployment, and
// the restore fails. Without a source, subject-bound values stay
// unreadable.
func Restore(ctx context.Context, opts RestoreOptions) (res RestoreResult, err error) {
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return res, fmt.Errorf("data directory: %w", err)
	}
	if config.Initialised(dir) {
		return res, fmt.Errorf("%s: %w (restore needs a new, empty directory)", dir, config.ErrInitialised)
	}
	existed := false
	if entries, err := os.ReadDir(dir); err == nil {
		existed = true
		if len(entries) > 0 {
			return res, fmt.Errorf("%s is not empty (found %s): restore needs a new, empty directory", dir, entries[0].Name())
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("data directory: %w", err)
	}
	var p keyprovider.Provider
	switch {
	case opts.RootKeyFile != "" && opts.RootKeyCheckFile != "":
		return res, errors.New("root key: give a root key file or a shamir check file with shares, not both")
	case opts.RootKeyCheckFile != "":
		check, err := os.ReadFile(opts.RootKeyCheckFile) // #nosec G304 -- the operator names the check file
		if err != nil {
			return res, fmt.Errorf("root key check file: %w", err)
		}
		sp, err := keyprovider.NewSealed(check, opts.Rand)
		if err != nil {
			return res, fmt.Errorf("root key check file %s: %w", opts.RootKeyCheckFile, err)
		}
		if err := unseal.With(sp, opts.UnsealShares); err != nil {
			return res, err
		}
		p = sp
	default:
		fp, err := keyprovider.OpenFile(opts.RootKeyFile)
		if err != nil {
			return res, fmt.Errorf("root key: %w", err)
		}
		p = fp
	}
	in, err := os.Open(opts.In) // #nosec G304 -- the operator names the backup file
	if err != nil {
		return res, fmt.Errorf("backup file: %w", err)
	}
	defer in.Close()
	// The subject-key source is checked before anything is made: a wrong
	// one leaves nothing behind.
	var src *store.DB
	if opts.SubjectKeysFromDataDir != "" || opts.SubjectKeysFromDatabaseURL != "" {
		if src, err = openSubjectKeySource(ctx, opts, dir, p); err != nil {
			return res, err
		}
		defer src.Close()
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, fmt.Errorf("create data directory: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		// Leave nothing half-restored: the directory as it was.
		if existed {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				_ = os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		} else {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o700); err != nil { // #nosec G302 -- a directory needs its x bit; 0700 is owner-only
		return res, fmt.Errorf("data directory mode: %w", err)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		return res, err
	}
	settings := map[string]string{"listen": opts.Listen, "database_url": opts.DatabaseURL}
	if opts.RootKeyCheckFile != "" {
		settings["root_key.provider"] = config.ProviderShamir
	}
	for k, v := range settings {
		if v != "" {
			if err := cfg.Set(k, v); err != nil {
				return res, err
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if opts.RootKeyCheckFile != "" {
		if err := copyKeyFile(opts.RootKeyCheckFile, cfg.RootKey.CheckFile); err != nil {
			return res, fmt.Errorf("copy root key check file: %w", err)
		}
	} else if err := copyKeyFile(opts.RootKeyFile, cfg.RootKey.File); err != nil {
		return res, fmt.Errorf("copy root key: %w", err)
	}
	if err := pki.CreateDeploymentTLS(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile, opts.Rand, opts.Now(), opts.Hosts); err != nil {
		return res, err
	}
	db, err := store.Open(ctx, cfg.StoreDSN(), store.Options{})
	if err != nil {
		return res, err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return res, err
	}
	// Import before anything opens the keyring: Check would make a root
	// check key in the empty store, and Import refuses a store with rows.
	if err := Read(ctx, newCountingReader(in, progress.Of(ctx)), p, db); err != nil {
		if errors.Is(err, keyprovider.ErrUnwrap) {
			return res, ErrWrongRootKey
		}
		return res, err
	}
	// From here a failure leaves rows in a PostgreSQL database (a SQLite
	// one goes with the directory): empty it again, before db closes.
	defer func() {
		if err == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if derr := db.DiscardRestore(dctx); derr != nil {
			err = fmt.Errorf("%w (and emptying the database again failed, so empty it before restoring into it: %v)", err, derr)
		}
	}()
	kr := keyring.New(p, db, keyring.Options{})
	defer kr.Close()
	if err := CheckRootKey(ctx, kr, db); err != nil {
		return res, fmt.Errorf("restored, but the root key does not open the restored keys: %w", err)
	}
	// A backup made before records carried revisions holds records of the
	// older format, and its rewrap job may say done: run it again, so the
	// restored deployment upgrades them (it moves nothing that is current).
	if err := db.ResetJobState(ctx, lifecycle.RewrapJob, `{"done":false}`, opts.Now()); err != nil {
		return res, fmt.Errorf("restored, but the rewrap could not be scheduled: %w", err)
	}
	// The restore is audited on the new deployment's offline chain
	// (NODE/offline, which continues the backup's when the node name is
	// the same): no event, no deployment (the directory is removed).
	// Restoring subjects reads the live deployment's keys, so it runs
	// between the two events.
	offline := auditadmin.Offline{DB: db, Keys: kr, Audit: cfg.Audit, Node: cfg.Node, Now: opts.Now}
	err = offline.Run(ctx, "restore", "deployment", func() error {
		// A backup of an older version holds a policy written for the
		// policy language of its time.
		changes, err := policystore.Rewrite(ctx, db, opts.Now())
		if err != nil {
			return err
		}
		for _, ch := range changes {
			res.PolicyChanges = append(res.PolicyChanges, ch.String())
		}
		if src == nil {
			return nil
		}
		return restoreSubjects(ctx, opts, p, db, src, &res)
	})
	if err != nil {
		return res, err
	}
	if err := config.Write(dir, cfg); err != nil {
		return res, fmt.Errorf("write config: %w", err)
	}
	res.URL, res.CACert = cfg.PublicURL, cfg.TLS.CAFile
	return res, nil
}

// copyKeyFile copies a root key file (already read and checked by
// keyprovider.OpenFile) to a new file with mode 0600.
func copyKeyFile(from, to string) error {
	b, err := os.ReadFile(from) // #nosec G304 -- the operator names the root key file
	if err != nil {
		return err
	}
	defer clear(b)
	return unseal.WriteNew(to, b)
}

// countingExporter is the store as a backup reads it, telling fn of the
// rows written of total.
type countingExporter struct {
	*store.DB
	total int64
	fn    progress.Func
}

func (c *countingExporter) Export(ctx context.Context, fn func(table string, row []any) error) error {
	var n int64
	c.fn(0, c.total)
	return c.DB.Export(ctx, func(table string, row []any) error {
		n++
		if n%256 == 0 || n == c.total {
			c.fn(n, max(c.total, n))
		}
		return fn(table, row)
	})
}

// countingReader counts the bytes read from a file of a known size.
type countingReader struct {
	r     io.Reader
	n     int64
	total int64
	fn    progress.Func
}

func newCountingReader(f *os.File, fn progress.Func) io.Reader {
	var total int64
	if fi, err := f.Stat(); err == nil {
		total = fi.Size()
	}
	return &countingReader{r: f, total: total, fn: fn}
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.fn(c.n, max(c.total, c.n))
	return n, err
}
