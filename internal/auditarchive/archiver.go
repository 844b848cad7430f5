package auditarchive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
)

// Job is the background job's name: its lease lets one node (or one
// offline command) archive and prune at a time in a cluster.
const Job = "audit-archive"

// Defaults.
const (
	DefaultRetainInDB       = 7 * 24 * time.Hour
	DefaultMaxSegmentEvents = 100_000
)

// Store is the database's side: the audit log, the segments recorded, and
// the job lease with its fencing token.
type Store interface {
	audit.Store
	AuditSegments(ctx context.Context, node string) ([]coffer.AuditSegment, error)
	AddAuditSegment(ctx context.Context, lease coffer.JobLease, now time.Time, s coffer.AuditSegment) error
	PruneAuditSegment(ctx context.Context, lease coffer.JobLease, now time.Time, node string, firstSeq uint64) (int64, error)
	AcquireLease(ctx context.Context, job, node string, now time.Time, ttl time.Duration) (coffer.JobLease, bool, error)
	ReleaseLease(ctx context.Context, l coffer.JobLease) error
}

// Config holds an Archiver's dependencies.
type Config struct {
	Store   Store
	Archive Archive
	Keys    audit.KeyLookup
	// Deployment is the deployment's id, written into every segment and
	// required of every segment verified.
	Deployment string
	// Holder names who takes the job's lease (the node, or NODE/offline).
	Holder string
	Now    func() time.Time
	// MaxSegmentEvents bounds a segment (cut at the last checkpoint that
	// keeps it within; a single longer checkpoint interval is one segment).
	MaxSegmentEvents int
	// Log, if set, writes the audit event that precedes each prune; a
	// prune whose event cannot be written does not happen.
	Log    func(ctx context.Context, e audit.Event) error
	Logger *slog.Logger
	// LeaseTTL is the job lease's length (default 1m).
	LeaseTTL time.Duration
}

// Archiver archives sealed segments and prunes them from the database.
type Archiver struct{ c Config }

// New returns an Archiver.
func New(c Config) *Archiver {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxSegmentEvents <= 0 {
		c.MaxSegmentEvents = DefaultMaxSegmentEvents
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = time.Minute
	}
	return &Archiver{c: c}
}

// Result says what a run did.
type Result struct {
	Archived       []string `json:"archived"` // segments written and verified in this run
	Adopted        []string `json:"adopted"`  // segments found in the archive (an earlier run cut short) and recorded
	Pruned         []string `json:"pruned"`   // segments whose events left the database
	ArchivedEvents int      `json:"archived_events"`
	PrunedEvents   int64    `json:"pruned_events"`
	Bytes          int64    `json:"bytes"` // archive bytes written
}

// ErrBusy: another node (or run) holds the archive job's lease.
var ErrBusy = errors.New("auditarchive: the audit archive job runs elsewhere")

// Run archives every sealed segment whose closing checkpoint was signed
// before before, then prunes from the database the archived segments whose
// last event is before before (never a node's newest event). A failure
// (a full archive volume, a segment that does not read back) stops the
// run with an error; what was done stays done, and the next run resumes.
func (a *Archiver) Run(ctx context.Context, before time.Time) (Result, error) {
	var res Result
	lease, ok, err := a.c.Store.AcquireLease(ctx, Job, a.c.Holder, a.c.Now(), a.c.LeaseTTL)
	if err != nil {
		return res, fmt.Errorf("auditarchive: lease: %w", err)
	}
	if !ok {
		return res, ErrBusy
	}
	defer func() { _ = a.c.Store.ReleaseLease(context.WithoutCancel(ctx), lease) }()
	nodes, err := a.c.Store.AuditNodes(ctx)
	if err != nil {
		return res, err
	}
	listed, err := a.c.Archive.List(ctx)
	if err != nil {
		return res, fmt.Errorf("auditarchive: list archive: %w", err)
	}
	inArchive := map[string]map[uint64]Info{}
	for _, in := range listed {
		if inArchive[in.Node] == nil {
			inArchive[in.Node] = map[uint64]Info{}
		}
		inArchive[in.Node][in.FirstSeq] = in
	}
	vk := audit.NewVerifyKeys(a.c.Keys)
	for _, node := range nodes {
		if lease, err = a.renew(ctx, lease); err != nil {
			return res, err
		}
		if err := a.archiveNode(ctx, &lease, vk, node, before, inArchive[node], &res); err != nil {
			return res, err
		}
	}
	for _, node := range nodes {
		if err := a.pruneNode(ctx, lease, node, before, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (a *Archiver) renew(ctx context.Context, l coffer.JobLease) (coffer.JobLease, error) {
	next, ok, err := a.c.Store.AcquireLease(ctx, Job, a.c.Holder, a.c.Now(), a.c.LeaseTTL)
	if err != nil {
		return l, err
	}
	if !ok || next.Fence != l.Fence {
		return l, fmt.Errorf("%w: %s", coffer.ErrLeaseLost, Job)
	}
	return next, nil
}

// archiveNode writes node's sealed, not yet archived segments.
func (a *Archiver) archiveNode(ctx context.Context, lease *coffer.JobLease, vk *audit.VerifyKeys, node string, before time.Time, existing map[uint64]Info, res *Result) error {
	segs, err := a.c.Store.AuditSegments(ctx, node)
	if err != nil {
		return err
	}
	start, prev := uint64(1), audit.Genesis(node)
	if n := len(segs); n > 0 {
		start, prev = segs[n-1].LastSeq+1, segs[n-1].HeadHash
	}
	cps, err := a.c.Store.Checkpoints(ctx, node)
	if err != nil {
		return err
	}
	var sealed []audit.Checkpoint
	for _, cp := range cps {
		if cp.Seq >= start && cp.Time.Before(before) {
			sealed = append(sealed, cp)
		}
	}
	for len(sealed) > 0 {
		// The segment closes at the last checkpoint within the size bound
		// (the first one if even it is beyond).
		end := 0
		for i, cp := range sealed {
			if cp.Seq-start+1 <= uint64(a.c.MaxSegmentEvents) { // #nosec G115 -- positive config value
				end = i
			}
		}
		closing := sealed[end]
		var seg *audit.Segment
		if in, ok := existing[start]; ok {
			// An earlier run wrote it and stopped before recording it: adopt
			// it if it verifies, whatever checkpoint it closes at.
			if seg, err = a.readVerified(ctx, vk, in.ID, start, prev); err != nil {
				return err
			}
			res.Adopted = append(res.Adopted, in.ID)
		} else {
			if seg, err = a.build(ctx, node, start, prev, cps, closing); err != nil {
				return err
			}
			data, err := audit.EncodeSegment(seg)
			if err != nil {
				return err
			}
			id := seg.Header.ID()
			if err := a.c.Archive.Put(ctx, id, data); err != nil {
				return fmt.Errorf("auditarchive: write segment %s: %w", id, err)
			}
			if seg, err = a.readVerified(ctx, vk, id, start, prev); err != nil {
				return err
			}
			res.Archived = append(res.Archived, id)
			res.ArchivedEvents += len(seg.Events)
			res.Bytes += int64(len(data))
		}
		h := &seg.Header
		info, err := a.c.Archive.Stat(ctx, h.ID())
		if err != nil {
			return err
		}
		if *lease, err = a.renew(ctx, *lease); err != nil {
			return err
		}
		if err := a.c.Store.AddAuditSegment(ctx, *lease, a.c.Now(), coffer.AuditSegment{Node: node, FirstSeq: h.FirstSeq,
			LastSeq: h.LastSeq, PrevHash: h.PrevHash, HeadHash: h.HeadHash, FirstTime: h.FirstTime, LastTime: h.LastTime,
			Bytes: info.Bytes, Verified: a.c.Now()}); err != nil {
			return err
		}
		start, prev = h.LastSeq+1, h.HeadHash
		for len(sealed) > 0 && sealed[0].Seq < start {
			sealed = sealed[1:]
		}
	}
	return nil
}

// build reads node's events from start to closing.Seq from the database.
func (a *Archiver) build(ctx context.Context, node string, start uint64, prev string, cps []audit.Checkpoint, closing audit.Checkpoint) (*audit.Segment, error) {
	seg := &audit.Segment{}
	errStop := errors.New("stop")
	err := a.c.Store.ScanAudit(ctx, node, start-1, func(e audit.Event) error {
		if e.Seq > closing.Seq {
			return errStop
		}
		seg.Events = append(seg.Events, e)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("auditarchive: read %s: %w", audit.SegmentID(node, start, closing.Seq), err)
	}
	for _, cp := range cps {
		if cp.Seq >= start && cp.Seq <= closing.Seq {
			seg.Checkpoints = append(seg.Checkpoints, cp)
		}
	}
	h := &seg.Header
	h.Deployment, h.Node, h.FirstSeq, h.LastSeq, h.PrevHash = a.c.Deployment, node, start, closing.Seq, prev
	h.Sealed = a.c.Now().UTC()
	if n := len(seg.Events); n > 0 {
		h.HeadHash, h.FirstTime, h.LastTime = seg.Events[n-1].Hash, seg.Events[0].Time, seg.Events[n-1].Time
	}
	return seg, nil
}

// readVerified reads segment id back from the archive and verifies it as
// the part of node's chain from start, linked to prev.
func (a *Archiver) readVerified(ctx context.Context, vk *audit.VerifyKeys, id string, start uint64, prev string) (*audit.Segment, error) {
	data, err := a.c.Archive.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("auditarchive: read back %s: %w", id, err)
	}
	seg, err := audit.DecodeSegment(data)
	if err != nil {
		return nil, fmt.Errorf("auditarchive: read back %s: %w", id, err)
	}
	c := audit.NewChainAt(ctx, vk, seg.Header.Node, start, prev)
	if err := c.Segment(seg, a.c.Deployment); err != nil {
		return nil, fmt.Errorf("auditarchive: read back %s: %w", id, err)
	}
	return seg, nil
}

// pruneNode prunes node's archived segments older than before, in seq
// order, keeping the newest event in the database.
func (a *Archiver) pruneNode(ctx context.Context, lease coffer.JobLease, node string, before time.Time, res *Result) error {
	segs, err := a.c.Store.AuditSegments(ctx, node)
	if err != nil {
		return err
	}
	head, _, err := a.c.Store.AuditHead(ctx, node)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if !s.Pruned.IsZero() {
			continue
		}
		if !s.LastTime.Before(before) || s.LastSeq >= head {
			return nil // segments are pruned in order
		}
		id := audit.SegmentID(node, s.FirstSeq, s.LastSeq)
		// The archived copy must still be there, whole, before its events
		// leave the database.
		info, err := a.c.Archive.Stat(ctx, id)
		if err != nil {
			return fmt.Errorf("auditarchive: prune %s: archived copy: %w", id, err)
		}
		if info.Bytes != s.Bytes {
			return fmt.Errorf("auditarchive: prune %s: the archived copy is %d bytes, %d were written", id, info.Bytes, s.Bytes)
		}
		if a.c.Log != nil {
			e := audit.Event{PrincipalID: "system:" + Job, PrincipalKind: coffer.KindOperator, SourceIP: "local",
				Action: "prune", Resource: "audit", Decision: audit.DecisionAllow, Rule: "audit.retain_in_db",
				Reason: "archived", Count: int(s.LastSeq - s.FirstSeq + 1), // #nosec G115 -- bounded by MaxSegmentEvents
				Targets: []string{"audit/segments/" + id}}
			if err := a.c.Log(ctx, e); err != nil {
				return fmt.Errorf("auditarchive: prune %s: audit event: %w", id, err)
			}
		}
		n, err := a.c.Store.PruneAuditSegment(ctx, lease, a.c.Now(), node, s.FirstSeq)
		if err != nil {
			return err
		}
		res.Pruned = append(res.Pruned, id)
		res.PrunedEvents += n
	}
	return nil
}
