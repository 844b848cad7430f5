package auditadmin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
)

// Reader lists audit events for the API and flags every stored row whose
// columns disagree with its hashed body (or whose body does not decode):
// someone edited the audit table outside Coffer. Each such row is logged at
// error level with its node, seq and column, and counted in
// coffer_audit_row_mismatches_total (alert CofferAuditRowsEdited); the
// answer itself comes from the bodies only (audit.Rows.ListAuditPage).
type Reader struct {
	DB     *store.DB
	Logger *slog.Logger
	// Mismatch counts one flagged row; may be nil.
	Mismatch func()
}

// ListAuditPage implements Lister.
func (r Reader) ListAuditPage(ctx context.Context, f audit.Filter) (audit.Page, error) {
	p, err := audit.OnRows(r.DB).ListAuditPage(ctx, f)
	if err != nil {
		return p, err
	}
	flagCorrupt(r.Logger, p.Corrupt)
	if r.Mismatch != nil {
		for range p.Corrupt {
			r.Mismatch()
		}
	}
	return p, nil
}

// flagCorrupt logs each row of a listing that could not be trusted.
func flagCorrupt(log *slog.Logger, rows []*audit.CorruptEventError) {
	for _, c := range rows {
		what := c.Column
		if what == "" {
			what = "body"
		}
		log.Error("audit row's columns disagree with its hashed body: the audit table was edited outside Coffer; run `coffer audit verify`",
			"node", c.Node, "seq", c.Seq, "column", what)
	}
}

// Tail prints db's audit events from since on, one JSON object a line, in
// (time, node, seq) order; with follow it keeps polling for new ones until
// ctx ends. Events come from their hashed bodies; a stored row whose
// columns disagree with its body is reported to log (a warning for the
// operator: run `coffer audit verify`).
func Tail(ctx context.Context, db *store.DB, w io.Writer, log *slog.Logger, since time.Time, follow bool) error {
	enc := json.NewEncoder(w)
	f := audit.Filter{Since: since, Limit: audit.MaxListLimit}
	for {
		p, err := audit.OnRows(db).ListAuditPage(ctx, f)
		if err != nil {
			return fmt.Errorf("audit tail: %w", err)
		}
		flagCorrupt(log, p.Corrupt)
		for _, e := range p.Events {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		if p.Last != nil {
			f.After = p.Last
		}
		if p.More {
			continue // more waiting: no pause
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
