package auditadmin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auditarchive"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/metrics"
	"github.com/cofferhq/coffer/internal/store"
)

// MetaDeploymentID is the meta key holding the deployment's id, which
// every archived segment names (a segment from another deployment is a
// finding).
const MetaDeploymentID = "audit.deployment_id"

// DeploymentID returns the deployment's id, making one on first use.
func DeploymentID(ctx context.Context, db *store.DB) (string, error) {
	v, err := db.Meta(ctx, MetaDeploymentID)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return db.AddMeta(ctx, MetaDeploymentID, hex.EncodeToString(b[:]))
}

// ArchiveStore is the database as the archiver needs it: the audit log
// through its Rows, the segments and the job lease from the store.
type ArchiveStore struct {
	audit.Rows
	DB *store.DB
}

// NewArchiveStore returns db as an auditarchive.Store.
func NewArchiveStore(db *store.DB) ArchiveStore { return ArchiveStore{Rows: audit.OnRows(db), DB: db} }

// AuditSegments implements auditarchive.Store.
func (s ArchiveStore) AuditSegments(ctx context.Context, node string) ([]coffer.AuditSegment, error) {
	return s.DB.AuditSegments(ctx, node)
}

// AddAuditSegment implements auditarchive.Store.
func (s ArchiveStore) AddAuditSegment(ctx context.Context, l coffer.JobLease, now time.Time, seg coffer.AuditSegment) error {
	return s.DB.AddAuditSegment(ctx, l, now, seg)
}

// PruneAuditSegment implements auditarchive.Store.
func (s ArchiveStore) PruneAuditSegment(ctx context.Context, l coffer.JobLease, now time.Time, node string, first uint64) (int64, error) {
	return s.DB.PruneAuditSegment(ctx, l, now, node, first)
}

// AcquireLease implements auditarchive.Store.
func (s ArchiveStore) AcquireLease(ctx context.Context, job, node string, now time.Time, ttl time.Duration) (coffer.JobLease, bool, error) {
	return s.DB.AcquireLease(ctx, job, node, now, ttl)
}

// ReleaseLease implements auditarchive.Store.
func (s ArchiveStore) ReleaseLease(ctx context.Context, l coffer.JobLease) error {
	return s.DB.ReleaseLease(ctx, l)
}

// ArchiveConfig builds an Archiver for a deployment.
type ArchiveConfig struct {
	DB     *store.DB
	Keys   *keyring.Keyring
	Audit  config.Audit
	Holder string // the node (or NODE/offline) that takes the job's lease
	Now    func() time.Time
	Logger *slog.Logger
	// Log writes the audit event before each prune (a serving node's
	// writer); nil for an offline run, audited as a whole (Offline.Run).
	Log func(ctx context.Context, e audit.Event) error
}

// NewArchiver returns the archiver of a deployment whose audit.archive is
// set (an error otherwise).
func NewArchiver(ctx context.Context, c ArchiveConfig) (*auditarchive.Archiver, error) {
	if c.Audit.Archive == "" {
		return nil, coffer.Errorf(coffer.ECONFLICT, "audit.archive is not configured")
	}
	dep, err := DeploymentID(ctx, c.DB)
	if err != nil {
		return nil, fmt.Errorf("audit archive: deployment id: %w", err)
	}
	return auditarchive.New(auditarchive.Config{Store: NewArchiveStore(c.DB), Archive: auditarchive.FileArchive{Dir: c.Audit.Archive},
		Keys: KeyLookup{Keys: c.Keys}, Deployment: dep, Holder: c.Holder, Now: c.Now,
		MaxSegmentEvents: c.Audit.ArchiveSegmentEvents, Log: c.Log, Logger: c.Logger}), nil
}

// VerifyArchive verifies the archive (audit.archive) and the database as
// one chain per node (auditarchive.Verify).
func VerifyArchive(ctx context.Context, db *store.DB, keys *keyring.Keyring, a config.Audit, opt auditarchive.VerifyOptions) (auditarchive.Report, error) {
	dep, err := DeploymentID(ctx, db)
	if err != nil {
		return auditarchive.Report{}, err
	}
	return auditarchive.Verify(ctx, auditarchive.FileArchive{Dir: a.Archive}, audit.OnRows(db), KeyLookup{Keys: keys}, dep, opt)
}

// ArchiveRunner runs the archive job once (auditarchive.Archiver).
type ArchiveRunner interface {
	Run(ctx context.Context, before time.Time) (auditarchive.Result, error)
}

// SegmentLister lists pruned segments whose events reach since or later.
type SegmentLister interface {
	PrunedAuditSegments(ctx context.Context, since time.Time, limit int) ([]coffer.AuditSegment, error)
}

// WithArchive lets q archive on demand (run, nil when audit.archive is not
// set) and say which archived segments a listing's range reaches into.
func (q *Query) WithArchive(run ArchiveRunner, segs SegmentLister, retain time.Duration, now func() time.Time, logger *slog.Logger) *Query {
	q.archive, q.segs, q.retain, q.now, q.logger = run, segs, retain, now, logger
	return q
}

// ArchiveRequest is POST /v1/admin/audit/archive's body.
type ArchiveRequest struct {
	// Before, if set, archives and prunes what is older than this (a Go
	// duration); audit.retain_in_db otherwise.
	Before string `json:"before,omitempty"`
}

// Archive archives the sealed audit history now and prunes it from the
// database, for a caller with admin on audit; read reads the request after
// the decision.
func (q *Query) Archive(ctx context.Context, c coffer.Caller, read func() (ArchiveRequest, error)) (auditarchive.Result, error) {
	c.Note.Target("admin", "audit")
	if err := q.auth.Allowed(c.Principal, "admin", "audit", c.IP, c.Note); err != nil {
		return auditarchive.Result{}, err
	}
	req, err := read()
	if err != nil {
		return auditarchive.Result{}, err
	}
	age := q.retain
	if req.Before != "" {
		d, err := time.ParseDuration(req.Before)
		if err != nil || d < 0 {
			return auditarchive.Result{}, coffer.Errorf(coffer.EINVALID, "before must be a non-negative Go duration")
		}
		age = d
	}
	if q.archive == nil {
		return auditarchive.Result{}, coffer.Errorf(coffer.ECONFLICT, "audit.archive is not configured")
	}
	res, err := q.archive.Run(ctx, q.now().Add(-age))
	if errors.Is(err, auditarchive.ErrBusy) {
		return res, coffer.Errorf(coffer.ECONFLICT, "the audit archive job is running")
	}
	if err != nil {
		// The archive volume (full, unreachable) or a segment that did not
		// read back: nothing more was pruned; the reason is logged.
		q.logArchiveFailure(err)
		return res, coffer.Errorf(coffer.EUNAVAILABLE, "the audit archive could not be written or read back; nothing more was pruned (see the server log)")
	}
	c.Note.Count = len(res.Archived) + len(res.Pruned)
	if res.Archived == nil {
		res.Archived = []string{}
	}
	if res.Adopted == nil {
		res.Adopted = []string{}
	}
	if res.Pruned == nil {
		res.Pruned = []string{}
	}
	return res, nil
}

// logArchiveFailure logs why an archive run failed (paths and ids, never a
// value: events hold none).
func (q *Query) logArchiveFailure(err error) {
	if q.logger != nil {
		q.logger.Error("audit archive failed", "error", err)
	}
}

// maxArchivedIDs bounds the archived segment ids a listing names.
const maxArchivedIDs = 100

// archivedSince returns the ids of pruned segments a listing from since
// reaches into.
func (q *Query) archivedSince(ctx context.Context, since time.Time) ([]string, error) {
	if q.segs == nil {
		return nil, nil
	}
	segs, err := q.segs.PrunedAuditSegments(ctx, since, maxArchivedIDs)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range segs {
		ids = append(ids, audit.SegmentID(s.Node, s.FirstSeq, s.LastSeq))
	}
	return ids, nil
}

// RunArchiveJob archives sealed audit segments and prunes those older than
// a.RetainInDB every a.ArchiveEvery, on the node that holds the job's
// lease, until ctx ends. A failed run (a full archive volume) leaves the
// database as it was, is logged and counted
// (coffer_audit_archive_failures_total), and is tried again next time; the
// node keeps serving.
func RunArchiveJob(ctx context.Context, arch ArchiveRunner, a config.Audit, now func() time.Time, log *slog.Logger, m *metrics.Metrics) {
	t := time.NewTicker(a.ArchiveEvery.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := arch.Run(ctx, now().Add(-a.RetainInDB.Duration))
		switch {
		case errors.Is(err, auditarchive.ErrBusy) || ctx.Err() != nil:
		case err != nil:
			m.AuditArchiveFailures.Inc()
			log.Error("audit archive failed: nothing more is pruned until it succeeds", "error", err)
		default:
			m.AuditArchived.WithLabelValues("archived").Add(float64(res.ArchivedEvents))
			m.AuditArchived.WithLabelValues("pruned").Add(float64(res.PrunedEvents))
			if len(res.Archived)+len(res.Pruned) > 0 {
				log.Info("audit archive", "archived", len(res.Archived), "pruned", len(res.Pruned), "pruned_events", res.PrunedEvents)
			}
		}
	}
}

// NewServingQuery returns the audit log's queries for a serving node
// (c.Holder), with the archive and its background job when audit.archive
// is set. An archive that cannot be set up is logged and counted, and the
// node serves without it (nothing is pruned), as with a full volume.
func NewServingQuery(ctx context.Context, c ArchiveConfig, m *metrics.Metrics, auth Authorizer) *Query {
	q := NewQuery(Reader{DB: c.DB, Keys: c.Keys, Logger: c.Logger, Mismatch: m.AuditRowMismatches.Inc},
		&Verifier{DB: c.DB, Keys: c.Keys, Audit: c.Audit, Node: c.Holder, Now: c.Now, Logger: c.Logger}, auth)
	q.WithArchive(nil, c.DB, c.Audit.RetainInDB.Duration, c.Now, c.Logger)
	if c.Audit.Archive == "" {
		return q
	}
	arch, err := NewArchiver(ctx, c)
	if err != nil {
		m.AuditArchiveFailures.Inc()
		c.Logger.Error("audit archive failed: it could not be set up, nothing is pruned", "error", err)
		return q
	}
	q.WithArchive(arch, c.DB, c.Audit.RetainInDB.Duration, c.Now, c.Logger)
	go RunArchiveJob(ctx, arch, c.Audit, c.Now, c.Logger, m)
	return q
}

// ArchiveOffline archives and prunes once for `coffer audit archive`, what
// is older than before (audit.retain_in_db when negative), under the job's
// lease, the run audited on o's offline chain.
func ArchiveOffline(ctx context.Context, o Offline, before time.Duration) (auditarchive.Result, error) {
	if before < 0 {
		before = o.Audit.RetainInDB.Duration
	}
	arch, err := NewArchiver(ctx, ArchiveConfig{DB: o.DB, Keys: o.Keys, Audit: o.Audit,
		Holder: o.Node + OfflineNodeSuffix, Now: o.Now, Logger: o.Logger})
	if err != nil {
		return auditarchive.Result{}, err
	}
	var res auditarchive.Result
	err = o.Run(ctx, "archive", "audit", func() error {
		var err error
		res, err = arch.Run(ctx, o.Now().Add(-before))
		return err
	})
	return res, err
}
