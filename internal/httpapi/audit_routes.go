package httpapi

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/coffer"
)

// AuditLog lists audit events. The page's events come from their hashed
// bodies and match the filter by them; rows it could not trust are in
// Page.Corrupt, for the AuditLog to flag (the answer leaves them out unless
// their body matches).
type AuditLog interface {
	ListAuditPage(ctx context.Context, f audit.Filter) (audit.Page, error)
}

// encodeCursor makes an opaque paging cursor from an event position.
func encodeCursor(c audit.Cursor) string {
	return strconv.FormatInt(c.Time.UnixMicro(), 10) + "." + strconv.FormatUint(c.Seq, 10) + "." + c.Node
}

func decodeCursor(s string) (*audit.Cursor, error) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 {
		return nil, coffer.Errorf(coffer.EINVALID, "after is not a cursor from a previous page")
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || !printable(parts[2]) {
		return nil, coffer.Errorf(coffer.EINVALID, "after is not a cursor from a previous page")
	}
	return &audit.Cursor{Time: time.UnixMicro(us).UTC(), Seq: seq, Node: parts[2]}, nil
}

func (s *Server) auditEvents(c *Call) (Reply, error) {
	c.Note.Target("read", "audit")
	if err := s.c.Policies.Allowed(c.Principal, "read", "audit", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	q := c.R.URL.Query()
	f := audit.Filter{Principal: q.Get("principal"), Action: q.Get("action")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxListLimit {
			return Reply{}, coffer.Errorf(coffer.EINVALID, "limit must be an integer from 1 to %d", audit.MaxListLimit)
		}
		f.Limit = n
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return Reply{}, coffer.Errorf(coffer.EINVALID, "since must be an RFC 3339 time")
		}
		f.Since = t
	}
	if v := q.Get("after"); v != "" {
		cur, err := decodeCursor(v)
		if err != nil {
			return Reply{}, err
		}
		f.After = cur
	}
	page, err := s.c.AuditLog.ListAuditPage(c.R.Context(), f)
	if err != nil {
		return Reply{}, err
	}
	evs := page.Events
	if evs == nil {
		evs = []audit.Event{}
	}
	out := map[string]any{"events": evs}
	if page.More && page.Last != nil {
		// After the last row read, not the last event served: a row left
		// out must not end the paging early.
		out["next"] = encodeCursor(*page.Last)
	}
	c.Note.Count = len(evs)
	return Reply{Body: out}, nil
}

// AuditVerifier checks the audit log while the node serves.
type AuditVerifier interface {
	// VerifyAudit verifies every node's hash chain in the store and its
	// signed checkpoints, and compares the store with the copies the
	// configuration names (the file sink, the witness). A broken log is a
	// result (OK false, with its findings), not an error; the error is for
	// a check that could not run (409 while another one runs).
	VerifyAudit(ctx context.Context) (AuditVerification, error)
}

// AuditVerification is the outcome of POST /v1/audit/verify.
type AuditVerification = auditadmin.Verification

// AuditVerifyRoutes returns POST /v1/audit/verify, for Config.Extra: it
// verifies the audit log now (as `coffer audit verify` does offline) and
// needs admin on audit: reading every event is heavy.
func AuditVerifyRoutes(v AuditVerifier, policies Policies) func(*Router) {
	return func(rt *Router) {
		rt.Handle("POST /v1/audit/verify", func(c *Call) (Reply, error) {
			c.Note.Target("admin", "audit")
			if err := policies.Allowed(c.Principal, "admin", "audit", c.IP, &c.Note); err != nil {
				return Reply{}, err
			}
			out, err := v.VerifyAudit(c.R.Context())
			if err != nil {
				return Reply{}, err
			}
			if out.Findings == nil {
				out.Findings = []string{}
			}
			c.Note.Count = out.Events
			return Reply{Body: out}, nil
		})
	}
}
