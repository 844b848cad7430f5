package auditarchive

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
)

// Query selects archived events for Search. Zero fields match everything.
type Query struct {
	Principal string
	Action    string
	Since     time.Time // events at or after
	Until     time.Time // events before (zero: no bound)
	Node      string
}

// Search reads the archive's segments directly (no database, no keys) and
// calls fn with each event matching q, segment by segment in node and seq
// order, skipping segments whose time range is outside q's. A segment that
// does not decode is an error naming it (run Verify to check hashes and
// signatures: Search only reads).
func Search(ctx context.Context, arch Archive, q Query, fn func(audit.Event) error) error {
	listed, err := arch.List(ctx)
	if err != nil {
		return fmt.Errorf("auditarchive: list archive: %w", err)
	}
	f := audit.Filter{Principal: q.Principal, Action: q.Action, Since: q.Since}
	for _, in := range listed {
		if q.Node != "" && in.Node != q.Node {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := arch.Get(ctx, in.ID)
		if err != nil {
			return err
		}
		seg, err := audit.DecodeSegment(data)
		if err != nil {
			return fmt.Errorf("segment %s: %w", in.ID, err)
		}
		h := &seg.Header
		if (!q.Since.IsZero() && h.LastTime.Before(q.Since)) || (!q.Until.IsZero() && !h.FirstTime.Before(q.Until)) {
			continue
		}
		for i := range seg.Events {
			e := &seg.Events[i]
			if !f.Matches(e) || (!q.Until.IsZero() && !e.Time.Before(q.Until)) {
				continue
			}
			if err := fn(*e); err != nil {
				return err
			}
		}
	}
	return nil
}

// PrintJSON writes the events of the archive in dir matching q to w, one
// JSON line each, and returns how many.
func PrintJSON(ctx context.Context, dir string, q Query, w io.Writer) (int, error) {
	n := 0
	err := Search(ctx, FileArchive{Dir: dir}, q, func(e audit.Event) error {
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
