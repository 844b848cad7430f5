package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/store"
)

// Authorizer decides whether a principal may act on a resource under the
// policy in force: nil when it may, a *coffer.Error EFORBIDDEN when it may
// not (any other error is an outage, and denies too). It records the
// decision in note, which may be nil.
type Authorizer interface {
	Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error
}

// JobsResource is the policy resource of the background jobs' progress
// (action read).
const JobsResource = "system/jobs"

// JobProgress is how far one background job has come, as a client polls
// it (GET /v1/admin/jobs): counts and times, never a value or record id.
type JobProgress struct {
	// Name is the job: rewrap or reindex.
	Name string `json:"name"`
	// State is idle (never asked for), pending (asked for, not started or
	// between runs), running (a node holds its lease) or done.
	State string `json:"state"`
	// Done of Total: records walked of all records (rewrap), blind index
	// entries under their field's newest key version of all entries of
	// rotated fields (reindex).
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Moved counts the records the rewrap moved to a newer key version in
	// this run.
	Moved int64 `json:"moved,omitempty"`
	// Node holds the job's lease while it runs.
	Node string `json:"node,omitempty"`
	// UpdatedAt is when the job last saved its progress.
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// progressStore is what Progress reads besides Store.
type progressStore interface {
	JobInfo(ctx context.Context, job string) (store.JobInfo, error)
	RecordsThrough(ctx context.Context, collection, id string) (through, total int64, err error)
}

// Progress reports the rewrap's and the reindex's progress to a caller
// the policy grants read on system/jobs (JobsResource); the decision is
// made here and noted for the audit log. A client polls it to draw a
// progress bar while a node runs the job.
func (j *Jobs) Progress(ctx context.Context, c coffer.Caller) ([]JobProgress, error) {
	c.Note.Target("read", JobsResource)
	if j.c.Authz == nil || c.Principal == nil {
		c.Note.Deny("no policy decides this")
		return nil, coffer.Errorf(coffer.EFORBIDDEN, "not allowed")
	}
	if err := j.c.Authz.Allowed(c.Principal, "read", JobsResource, c.IP, c.Note); err != nil {
		if c.Note != nil && c.Note.Decision != "deny" {
			c.Note.Deny("not allowed")
		}
		switch coffer.ErrorCode(err) {
		case coffer.EFORBIDDEN, coffer.ENOTFOUND, coffer.EUNAVAILABLE:
			return nil, err
		}
		return nil, fmt.Errorf("lifecycle: authorize read %s: %w", JobsResource, err)
	}
	if c.Note != nil && c.Note.Decision == "" {
		c.Note.Allow("")
	}
	ps, ok := j.c.Store.(progressStore)
	if !ok {
		return nil, fmt.Errorf("lifecycle: the store cannot report progress")
	}
	rw, err := j.rewrapProgress(ctx, ps)
	if err != nil {
		return nil, err
	}
	out := []JobProgress{rw}
	if j.c.ReindexProgress != nil {
		ri, err := j.reindexProgress(ctx, ps)
		if err != nil {
			return nil, err
		}
		out = append(out, ri)
	}
	if c.Note != nil {
		c.Note.Count = len(out)
	}
	return out, nil
}

func (j *Jobs) rewrapProgress(ctx context.Context, ps progressStore) (JobProgress, error) {
	p := JobProgress{Name: RewrapJob}
	info, err := ps.JobInfo(ctx, RewrapJob)
	if err != nil {
		return p, err
	}
	var st rewrapState
	if info.State != "" {
		if err := json.Unmarshal([]byte(info.State), &st); err != nil {
			return p, fmt.Errorf("lifecycle: rewrap state: %w", err)
		}
	}
	through, total, err := ps.RecordsThrough(ctx, st.Collection, st.ID)
	if err != nil {
		return p, err
	}
	p.Total, p.Moved = total, int64(st.Moved)
	if !info.UpdatedAt.IsZero() {
		t := info.UpdatedAt
		p.UpdatedAt = &t
	}
	switch {
	case info.State == "":
		p.State, p.Done = "idle", total
	case st.Done:
		p.State, p.Done = "done", total
	default:
		p.State, p.Done = "pending", through
		if st.Collection == "" && st.ID == "" {
			p.Done = 0
		}
		if info.Leased(j.c.Now()) {
			p.State, p.Node = "running", info.LeaseBy
		}
	}
	return p, nil
}

func (j *Jobs) reindexProgress(ctx context.Context, ps progressStore) (JobProgress, error) {
	p := JobProgress{Name: ReindexJob}
	done, total, err := j.c.ReindexProgress(ctx)
	if err != nil {
		return p, err
	}
	p.Done, p.Total = done, total
	info, err := ps.JobInfo(ctx, ReindexJob)
	if err != nil {
		return p, err
	}
	if !info.UpdatedAt.IsZero() {
		t := info.UpdatedAt
		p.UpdatedAt = &t
	}
	switch {
	case done >= total:
		p.State = "done"
	case info.Leased(j.c.Now()):
		p.State, p.Node = "running", info.LeaseBy
	default:
		p.State = "pending"
	}
	return p, nil
}
