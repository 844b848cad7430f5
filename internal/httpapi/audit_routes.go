package httpapi

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/auditarchive"
	"github.com/cofferhq/coffer/internal/coffer"
)

// AuditLog lists audit events for a caller and verifies the log; it
// decides who may (audit.Query). The page's events come from their hashed
// bodies and match the filter by them.
type AuditLog interface {
	Events(ctx context.Context, c coffer.Caller, read func() (audit.Filter, error)) (audit.Page, error)
	Verify(ctx context.Context, c coffer.Caller) (auditadmin.Verification, error)
	Archive(ctx context.Context, c coffer.Caller, read func() (auditadmin.ArchiveRequest, error)) (auditarchive.Result, error)
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
	page, err := s.c.AuditLog.Events(c.R.Context(), c.caller(), func() (audit.Filter, error) {
		q := c.R.URL.Query()
		f := audit.Filter{Principal: q.Get("principal"), Action: q.Get("action")}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > audit.MaxListLimit {
				return f, coffer.Errorf(coffer.EINVALID, "limit must be an integer from 1 to %d", audit.MaxListLimit)
			}
			f.Limit = n
		}
		if v := q.Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, coffer.Errorf(coffer.EINVALID, "since must be an RFC 3339 time")
			}
			f.Since = t
		}
		if v := q.Get("after"); v != "" {
			cur, err := decodeCursor(v)
			if err != nil {
				return f, err
			}
			f.After = cur
		}
		return f, nil
	})
	if err != nil {
		return Reply{}, err
	}
	out := map[string]any{"events": page.Events}
	if page.More && page.Last != nil {
		// After the last row read, not the last event served: a row left
		// out must not end the paging early.
		out["next"] = encodeCursor(*page.Last)
	}
	if len(page.Archived) > 0 {
		// The range reaches into history pruned from the database: these
		// sealed segments hold it (coffer audit search --archive).
		out["archived_segments"] = page.Archived
	}
	return Reply{Body: out}, nil
}

// auditArchive archives the sealed audit history and prunes it from the
// database now (as `coffer audit archive` does offline, and the
// background job every audit.archive_every); the use case decides who may.
func (s *Server) auditArchive(c *Call) (Reply, error) {
	res, err := s.c.AuditLog.Archive(c.R.Context(), c.caller(), func() (auditadmin.ArchiveRequest, error) {
		var req auditadmin.ArchiveRequest
		return req, decodeJSON(c.R, &req)
	})
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: res}, nil
}

// auditVerify verifies the audit log now (as `coffer audit verify` does
// offline).
func (s *Server) auditVerify(c *Call) (Reply, error) {
	out, err := s.c.AuditLog.Verify(c.R.Context(), c.caller())
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: out}, nil
}
