package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/vault"
)

// Store is what the jobs need.
type Store interface {
	// AcquireLease takes or renews a job's lease; ReleaseLease,
	// SetJobState, ReplaceValues, PurgeExpired and CheckLease refuse with
	// coffer.ErrLeaseLost once the lease they are given is no longer the
	// job's (fencing).
	AcquireLease(ctx context.Context, job, node string, now time.Time, ttl time.Duration) (coffer.JobLease, bool, error)
	ReleaseLease(ctx context.Context, l coffer.JobLease) error
	CheckLease(ctx context.Context, l coffer.JobLease, now time.Time) error
	JobState(ctx context.Context, job string) (string, error)
	SetJobState(ctx context.Context, l coffer.JobLease, state string, now time.Time) error
	RecordsAfter(ctx context.Context, collection, id string, limit int) ([]coffer.SealedRecord, error)
	ReplaceValues(ctx context.Context, l coffer.JobLease, now time.Time, recs []coffer.SealedRecord, old []map[string][]byte) (int, error)
	PurgeExpired(ctx context.Context, l coffer.JobLease, now time.Time, limit int) (int64, error)
	ResetJobState(ctx context.Context, job, state string, now time.Time) error
	DueDataKeys(ctx context.Context, q coffer.DueKeyQuery) ([]coffer.DataKey, error)
}

// Config holds the jobs' dependencies.
type Config struct {
	Store  Store
	Keys   KeyVersions
	Node   string
	Now    func() time.Time
	Logger *slog.Logger
	// Batch is how many records one transaction handles (default 500).
	Batch int
	// LeaseTTL is how long a lease lasts without renewal (default 1m).
	LeaseTTL time.Duration
	// OnRewrapped, if set, is told how many records each batch moved.
	OnRewrapped func(n int)
	// OnRewrapFailed, if set, is told of each rewrap run that failed
	// (not of one another node held, nor of one cut short by ctx).
	OnRewrapFailed func(err error)
	// Rotation, if its Rotate is set, rotates data keys automatically
	// (see AutoRotate).
	Rotation RotationConfig
	// Reindex, if set, moves blind index entries to their newest index key
	// version (vault.Reindex) and says how many it moved; Jobs runs it
	// under a lease with the others.
	Reindex func(ctx context.Context) (int, error)
	// ReindexProgress, if set, counts the blind index entries under
	// their field's newest index key version (done) of all entries of
	// rotated fields (total), for Progress.
	ReindexProgress func(ctx context.Context) (done, total int64, err error)
	// Authz decides who may read the jobs' progress (Progress); without
	// it nobody may.
	Authz Authorizer
}

// KeyVersions is the keyring as the rewrap job needs it.
type KeyVersions interface {
	// Reseal seals a value moved from an older version of keyID under the
	// newest one, counted as a rewrap use of that version
	// (coffer.DataKey.RewrapUses) as well as a use, so that the rotation
	// policy can tell a version filled by its own rewrap (see
	// RotationPolicy.Due).
	Reseal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, keyID string, env, aad []byte) ([]byte, error)
	// CurrentVersion is the version Seal uses now for keyID.
	CurrentVersion(ctx context.Context, keyID string) (uint32, error)
}

// Jobs runs the background jobs.
type Jobs struct {
	c Config
	// running holds one mutex per job: one run at a time in this process
	// too (the scheduler and a run started after a rotation share the
	// node id, so the store's lease alone would let both in).
	running map[string]*sync.Mutex
}

// New returns Jobs.
func New(c Config) *Jobs {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	j := &Jobs{c: c, running: map[string]*sync.Mutex{}}
	for _, name := range []string{RewrapJob, PurgeJob, ReindexJob, AutoRotateJob} {
		j.running[name] = &sync.Mutex{}
	}
	return j
}

// acquire takes job's lease for this node, and the job's in-process
// mutex; it returns ErrBusy when another node, or another run here, has
// the job. release gives both up; unlock only the mutex (the lease then
// runs out by itself, as a crashed node's would).
func (j *Jobs) acquire(ctx context.Context, job string) (lease coffer.JobLease, release, unlock func(), err error) {
	mu := j.running[job]
	if !mu.TryLock() {
		return lease, nil, nil, ErrBusy
	}
	lease, ok, err := j.c.Store.AcquireLease(ctx, job, j.c.Node, j.c.Now(), j.c.LeaseTTL)
	if err != nil || !ok {
		mu.Unlock()
		if err == nil {
			err = ErrBusy
		}
		return lease, nil, nil, err
	}
	return lease, func() {
		_ = j.c.Store.ReleaseLease(context.WithoutCancel(ctx), lease)
		mu.Unlock()
	}, mu.Unlock, nil
}

// renew extends lease as a job goes on; it fails with coffer.ErrLeaseLost
// when the lease changed hands meanwhile (it ran out and another node, or
// a new run, took it), so the run stops rather than write under a token
// no longer the job's.
func (j *Jobs) renew(ctx context.Context, lease coffer.JobLease) (coffer.JobLease, error) {
	next, ok, err := j.c.Store.AcquireLease(ctx, lease.Job, j.c.Node, j.c.Now(), j.c.LeaseTTL)
	if err != nil {
		return lease, err
	}
	if !ok || next.Fence != lease.Fence {
		return lease, fmt.Errorf("%w: %s (fence %d, now %d)", coffer.ErrLeaseLost, lease.Job, lease.Fence, next.Fence)
	}
	return next, nil
}

// Job names.
const (
	RewrapJob  = "rewrap"
	PurgeJob   = "purge"
	ReindexJob = "reindex"
)

// ErrBusy: another node holds the job's lease.
var ErrBusy = fmt.Errorf("lifecycle: the job runs on another node")

type rewrapState struct {
	Collection string `json:"collection"`
	ID         string `json:"id"`
	Done       bool   `json:"done"`
	Moved      int    `json:"moved"`
}

// RewrapReport says what a rewrap run did.
type RewrapReport struct {
	Scanned, Rewrapped int
	// Skipped counts records left as they were: a value's key or version
	// ended (an erased subject, a retired or destroyed version), or the
	// record failed its integrity check (also in Tampered). Each is logged
	// by collection and id.
	Skipped, Tampered int
	Done              bool
}

// Rewrap moves every value sealed under an older key version to the newest
// one, at most maxBatches batches per call (0 = until done). It resumes from
// the saved cursor, so a run killed half-way loses nothing and redoes
// nothing already moved. It returns ErrBusy when another node holds the job.
func (j *Jobs) Rewrap(ctx context.Context, maxBatches int) (RewrapReport, error) {
	rep, err := j.rewrap(ctx, maxBatches)
	if err != nil && !errors.Is(err, ErrBusy) && ctx.Err() == nil && j.c.OnRewrapFailed != nil {
		j.c.OnRewrapFailed(err)
	}
	return rep, err
}

func (j *Jobs) rewrap(ctx context.Context, maxBatches int) (RewrapReport, error) {
	var rep RewrapReport
	lease, release, unlock, err := j.acquire(ctx, RewrapJob)
	if err != nil {
		return rep, err
	}
	// A run that stops half-way (maxBatches, an error) keeps the lease
	// until it runs out, as a crashed node's would: its cursor is saved,
	// and the next run, here or on another node, goes on from it.
	finished := false
	defer func() {
		if finished {
			release()
		} else {
			unlock()
		}
	}()
	raw, err := j.c.Store.JobState(ctx, RewrapJob)
	if err != nil {
		return rep, err
	}
	var st rewrapState
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			return rep, fmt.Errorf("lifecycle: rewrap state: %w", err)
		}
	}
	if st.Done {
		finished = true
		return RewrapReport{Done: true}, nil
	}
	current := map[string]uint32{}
	for batches := 0; maxBatches == 0 || batches < maxBatches; batches++ {
		recs, err := j.c.Store.RecordsAfter(ctx, st.Collection, st.ID, j.c.Batch)
		if err != nil {
			return rep, err
		}
		if len(recs) == 0 {
			st.Done = true
			break
		}
		var (
			changed []coffer.SealedRecord
			old     []map[string][]byte
		)
		for _, r := range recs {
			cur, ok := current[r.KeyID]
			if !ok {
				if cur, err = j.c.Keys.CurrentVersion(ctx, r.KeyID); err != nil {
					// A destroyed (shredded) subject key: nothing to move.
					current[r.KeyID] = 0
					continue
				}
				current[r.KeyID] = cur
			}
			if cur == 0 {
				continue
			}
			next, moved, err := vault.RewrapRecord(ctx, j.c.Keys, r, cur)
			if skip(err) {
				rep.Skipped++
				if errors.Is(err, vault.ErrTampered) {
					rep.Tampered++
					j.c.Logger.Error("rewrap: a record failed its integrity check; left as it is",
						"collection", r.Collection, "record", r.ID)
				} else {
					j.c.Logger.Warn("rewrap: a record cannot be opened; left as it is",
						"collection", r.Collection, "record", r.ID, "error", err)
				}
				continue
			}
			if err != nil {
				return rep, err
			}
			if moved {
				changed = append(changed, next)
				old = append(old, r.Values)
			}
		}
		n, err := j.c.Store.ReplaceValues(ctx, lease, j.c.Now(), changed, old)
		if err != nil {
			return rep, err
		}
		last := recs[len(recs)-1]
		st.Collection, st.ID = last.Collection, last.ID
		st.Moved += n
		rep.Scanned += len(recs)
		rep.Rewrapped += n
		if j.c.OnRewrapped != nil {
			j.c.OnRewrapped(n)
		}
		if err := j.save(ctx, lease, st); err != nil {
			return rep, err
		}
		// Renew the lease as we go.
		if lease, err = j.renew(ctx, lease); err != nil {
			return rep, err
		}
	}
	if err := j.save(ctx, lease, st); err != nil {
		return rep, err
	}
	rep.Done, finished = st.Done, st.Done
	return rep, nil
}

func (j *Jobs) save(ctx context.Context, lease coffer.JobLease, st rewrapState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("lifecycle: rewrap state: %w", err)
	}
	return j.c.Store.SetJobState(ctx, lease, string(b), j.c.Now())
}

// skip reports whether the rewrap leaves a record for err and goes on:
// an ended key or version (an operator's act, not a fault, which would
// otherwise stop every later run at the same record) or a failed
// integrity check.
func skip(err error) bool {
	return errors.Is(err, vault.ErrTampered) || errors.Is(err, keyring.ErrKeyDestroyed) ||
		errors.Is(err, keyring.ErrKeyRetired) || errors.Is(err, keyring.ErrVersionDestroyed) ||
		errors.Is(err, keyring.ErrKeyNotFound)
}

// RequestRewrap schedules a rewrap run from the beginning (after a key
// rotation). The scheduler picks it up on its next tick, on whichever node
// holds the lease.
func (j *Jobs) RequestRewrap(ctx context.Context) error {
	return RequestRewrap(ctx, j.c.Store, j.c.Now())
}

// JobStateStore is what RequestRewrap needs of the store.
type JobStateStore interface {
	ResetJobState(ctx context.Context, job, state string, now time.Time) error
}

// RequestRewrap is Jobs.RequestRewrap for a caller that has the store but
// not the jobs (the keyring's rotation at the use bound).
func RequestRewrap(ctx context.Context, s JobStateStore, now time.Time) error {
	return s.ResetJobState(ctx, RewrapJob, `{"done":false}`, now)
}

// Purge deletes expired records in batches until none are left or ctx ends.
func (j *Jobs) Purge(ctx context.Context) (int64, error) {
	lease, release, _, err := j.acquire(ctx, PurgeJob)
	if err != nil {
		return 0, err
	}
	defer release()
	var total int64
	for ctx.Err() == nil {
		n, err := j.c.Store.PurgeExpired(ctx, lease, j.c.Now(), j.c.Batch)
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(j.c.Batch) {
			break
		}
		if lease, err = j.renew(ctx, lease); err != nil {
			return total, err
		}
	}
	// Idempotency keys past their 24 hours go with the expired records.
	if p, ok := j.c.Store.(interface {
		PurgeIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int64, error)
	}); ok && ctx.Err() == nil {
		for {
			n, err := p.PurgeIdempotencyKeys(ctx, j.c.Now(), j.c.Batch)
			if err != nil {
				return total, err
			}
			if n < int64(j.c.Batch) {
				break
			}
		}
	}
	return total, nil
}

// Run runs the purge and the rewrap every interval and, when
// Config.Rotation is set, the automatic key rotation every
// Rotation.Interval (followed at once by the rewrap it calls for), in the
// background until ctx ends; errors are logged, never fatal.
func (j *Jobs) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var rotate <-chan time.Time
	if r := j.c.Rotation; r.Rotate != nil && r.Interval > 0 {
		rt := time.NewTicker(r.Interval)
		defer rt.Stop()
		rotate = rt.C
	}
	work := true
	for {
		if work {
			j.purgeAndRewrap(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			work = true
		case <-rotate:
			work = j.autoRotate(ctx)
		}
	}
}

// Reindex runs Config.Reindex once while holding the reindex lease; it
// returns ErrBusy when another node holds it. Moves are compare-and-swap,
// so a run that outlives its lease and overlaps another stays correct.
func (j *Jobs) Reindex(ctx context.Context) (int, error) {
	if j.c.Reindex == nil {
		return 0, nil
	}
	lease, release, _, err := j.acquire(ctx, ReindexJob)
	if err != nil {
		return 0, err
	}
	defer release()
	n, err := j.c.Reindex(ctx)
	if err == nil {
		// A run that outlived its lease says so (its moves were
		// compare-and-swap, so still right).
		err = j.c.Store.CheckLease(ctx, lease, j.c.Now())
	}
	return n, err
}

// purgeAndRewrap runs the purge and the rewrap once, logging errors.
func (j *Jobs) purgeAndRewrap(ctx context.Context) {
	if n, err := j.Purge(ctx); err != nil && err != ErrBusy && ctx.Err() == nil {
		j.c.Logger.Warn("retention purge failed", "error", err)
	} else if n > 0 {
		j.c.Logger.Info("retention purge", "records", n)
	}
	if rep, err := j.Rewrap(ctx, 0); err != nil && err != ErrBusy && ctx.Err() == nil {
		j.c.Logger.Warn("rewrap failed", "error", err)
	} else if rep.Rewrapped > 0 {
		j.c.Logger.Info("rewrap", "records", rep.Rewrapped)
	}
	if n, err := j.Reindex(ctx); err != nil && err != ErrBusy && ctx.Err() == nil {
		j.c.Logger.Warn("reindex failed", "error", err)
	} else if n > 0 {
		j.c.Logger.Info("reindex", "entries", n)
	}
}
