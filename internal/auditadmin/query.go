package auditadmin

import (
	"context"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
)

// Authorizer decides a caller's request under the policy in force: nil
// when p may take action on resource from ip, a 403 otherwise; the
// decision is recorded in note.
type Authorizer interface {
	Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error
}

// Lister lists a page of stored events (the page's events come from their
// hashed bodies; see Page).
type Lister interface {
	ListAuditPage(ctx context.Context, f audit.Filter) (audit.Page, error)
}

// Query is the audit log as callers read it: listing events needs read on
// audit, verifying the whole log admin on audit (reading every event is
// heavy).
type Query struct {
	list    Lister
	verify  *Verifier
	auth    Authorizer
	archive ArchiveRunner
	segs    SegmentLister
	retain  time.Duration
	now     func() time.Time
	logger  *slog.Logger
}

// NewQuery returns the audit log's queries under auth.
func NewQuery(list Lister, verify *Verifier, auth Authorizer) *Query {
	return &Query{list: list, verify: verify, auth: auth}
}

// Events lists a page of events for a caller with read on audit; read
// reads the filter after the decision (its error is returned as it is).
func (q *Query) Events(ctx context.Context, c coffer.Caller, read func() (audit.Filter, error)) (audit.Page, error) {
	c.Note.Target("read", "audit")
	if err := q.auth.Allowed(c.Principal, "read", "audit", c.IP, c.Note); err != nil {
		return audit.Page{}, err
	}
	f, err := read()
	if err != nil {
		return audit.Page{}, err
	}
	page, err := q.list.ListAuditPage(ctx, f)
	if err != nil {
		return audit.Page{}, err
	}
	if page.Events == nil {
		page.Events = []audit.Event{}
	}
	// Older history may have left the database for the archive: name the
	// segments the range reaches into.
	if page.Archived, err = q.archivedSince(ctx, f.Since); err != nil {
		return audit.Page{}, err
	}
	c.Note.Count = len(page.Events)
	return page, nil
}

// Verify verifies the audit log now for a caller with admin on audit.
func (q *Query) Verify(ctx context.Context, c coffer.Caller) (Verification, error) {
	c.Note.Target("admin", "audit")
	if err := q.auth.Allowed(c.Principal, "admin", "audit", c.IP, c.Note); err != nil {
		return Verification{}, err
	}
	out, err := q.verify.VerifyAudit(ctx)
	if err != nil {
		return Verification{}, err
	}
	if out.Findings == nil {
		out.Findings = []string{}
	}
	c.Note.Count = out.Events
	return out, nil
}
