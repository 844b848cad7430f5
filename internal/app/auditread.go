package app

import (
	"context"
	"log/slog"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
)

// auditReader lists audit events for the API and flags every stored row
// whose columns disagree with its hashed body (or whose body does not
// decode): someone edited the audit table outside Coffer. Each such row is
// logged at error level with its node, seq and column, and counted in
// coffer_audit_row_mismatches_total (alert CofferAuditRowsEdited); the
// answer itself comes from the bodies only (store.DB.ListAuditPage).
type auditReader struct {
	db       *store.DB
	log      *slog.Logger
	mismatch func() // counts one flagged row; may be nil
}

// ListAuditPage implements httpapi.AuditLog.
func (r auditReader) ListAuditPage(ctx context.Context, f audit.Filter) (audit.Page, error) {
	p, err := r.db.ListAuditPage(ctx, f)
	if err != nil {
		return p, err
	}
	flagCorrupt(r.log, p.Corrupt)
	if r.mismatch != nil {
		for range p.Corrupt {
			r.mismatch()
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
