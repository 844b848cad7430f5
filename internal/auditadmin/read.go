package auditadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/store"
)

// Reader lists audit events for the API and flags every stored row that
// was edited outside Coffer: a row whose hash, recomputed from its
// columns, body and prev_hash (one HMAC-SHA256 an event), is not the
// stored one, or whose body does not decode, or (a JSON row written before
// migration 20) whose columns disagree with its body. Each such row is
// logged at error level with its node and seq and what disagrees (never a
// value), counted in coffer_audit_row_mismatches_total (alert
// CofferAuditRowsEdited), and never answered as matching the filter: an
// edited row is left out of the answer (audit.Rows.ListAuditPageChecked).
type Reader struct {
	DB     *store.DB
	Keys   *keyring.Keyring // every version of the audit HMAC key
	Logger *slog.Logger
	// Mismatch counts one flagged row; may be nil.
	Mismatch func()
}

// ListAuditPage implements Lister.
func (r Reader) ListAuditPage(ctx context.Context, f audit.Filter) (audit.Page, error) {
	p, err := audit.OnRows(r.DB).ListAuditPageChecked(ctx, f, KeyLookup{Keys: r.Keys})
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

// flagCorrupt logs each row of a listing that could not be trusted: its
// node, seq and what disagrees (a JSON row's column, "hash" for a hash
// that does not match the stored event, "body" for one that does not
// decode), never a value.
func flagCorrupt(log *slog.Logger, rows []*audit.CorruptEventError) {
	for _, c := range rows {
		what := c.Column
		switch {
		case what != "":
		case errors.Is(c.Err, audit.ErrHashMismatch):
			what = "hash"
		default:
			what = "body"
		}
		log.Error("audit row's columns disagree with its hashed body: the audit table was edited outside Coffer; run `coffer audit verify`",
			"node", c.Node, "seq", c.Seq, "column", what)
	}
}

// Tail prints db's audit events from since on, one JSON object a line, in
// (time, node, seq) order; with follow it keeps polling for new ones until
// ctx ends. Each event's hash is recomputed (keys holds every version of
// the audit HMAC key): an edited row is left out and reported to log (a
// warning for the operator: run `coffer audit verify`).
func Tail(ctx context.Context, db *store.DB, keys *keyring.Keyring, w io.Writer, log *slog.Logger, since time.Time, follow bool) error {
	enc := json.NewEncoder(w)
	f := audit.Filter{Since: since, Limit: audit.MaxListLimit}
	for {
		p, err := audit.OnRows(db).ListAuditPageChecked(ctx, f, KeyLookup{Keys: keys})
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
