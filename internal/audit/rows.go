package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/coffer"
)

// RowStore keeps audit rows as they are: the database's side of the audit
// log, which knows nothing of events. store.DB implements it; Rows makes it
// a Store. Its methods are those of Store with rows in place of events:
// AppendAuditRows is atomic and durable and refuses a (node, seq) that
// exists; ScanAuditRows calls fn for each row of node after afterSeq in
// seq order and returns fn's error as is; ListAuditRows reads up to
// q.Limit rows whose columns match q, in (time, node, seq) order.
type RowStore interface {
	AppendAuditRows(ctx context.Context, rows []coffer.AuditRow, checkpoints []Checkpoint) error
	AuditHead(ctx context.Context, node string) (seq uint64, hash string, err error)
	ScanAuditRows(ctx context.Context, node string, afterSeq uint64, fn func(*coffer.AuditRow) error) error
	AuditNodes(ctx context.Context) ([]string, error)
	Checkpoints(ctx context.Context, node string) ([]Checkpoint, error)
	ListAuditRows(ctx context.Context, q coffer.AuditQuery) ([]coffer.AuditRow, error)
}

// Rows is the Store kept in a RowStore: it encodes each event into its
// row (ColumnsOf the event and its JSON body) when appending, and decodes
// every event read from its row's body, checked against the row's columns
// (DecodeStored, CheckColumns).
type Rows struct{ RowStore }

// OnRows returns the Store that keeps events in rs.
func OnRows(rs RowStore) Rows { return Rows{rs} }

// AppendAudit implements Store.
func (r Rows) AppendAudit(ctx context.Context, events []Event, checkpoints []Checkpoint) error {
	if len(events) == 0 && len(checkpoints) == 0 {
		return nil
	}
	// Encoded before the store's transaction: on SQLite its closure runs
	// in the one serial write path.
	rows := make([]coffer.AuditRow, len(events))
	var buf []byte
	for i := range events {
		e := &events[i]
		b, err := e.AppendJSON(buf[:0])
		if err != nil {
			return fmt.Errorf("store: encode audit event: %w", err)
		}
		rows[i], buf = coffer.AuditRow{AuditColumns: ColumnsOf(e), Body: string(b)}, b
	}
	return r.RowStore.AppendAuditRows(ctx, rows, checkpoints)
}

// decodeRow returns the row's event, from its body, with a
// *CorruptEventError when the body does not decode (and a zero event) or
// when a column disagrees with it (and the body's event).
func decodeRow(r *coffer.AuditRow) (Event, error) {
	e, err := DecodeStored(r.Node, r.Seq, []byte(r.Body))
	if err != nil {
		return Event{}, err
	}
	return e, CheckColumns(r.AuditColumns, &e)
}

// ScanAudit implements Store. A row whose body does not decode or whose
// columns disagree with it ends the scan with its *CorruptEventError.
func (r Rows) ScanAudit(ctx context.Context, node string, afterSeq uint64, fn func(Event) error) error {
	return r.RowStore.ScanAuditRows(ctx, node, afterSeq, func(row *coffer.AuditRow) error {
		// An undecodable (edited) body, or a column edited apart from its
		// body, is a verification finding naming that event, not a
		// generic error.
		e, err := decodeRow(row)
		if err != nil {
			return err
		}
		return fn(e)
	})
}

// ListAudit implements Store: the events of ListAuditPage.
func (r Rows) ListAudit(ctx context.Context, f Filter) ([]Event, error) {
	p, err := r.ListAuditPage(ctx, f)
	return p.Events, err
}

// ListAuditPage reads up to f's limit of rows whose columns match f, in
// (time, node, seq) order, and answers from their bodies: an event is in
// the page only if its body decodes and matches f (Filter.Matches); every
// row whose body does not decode or whose columns disagree with it is
// listed in Corrupt. The columns only narrow down which rows are read.
func (r Rows) ListAuditPage(ctx context.Context, f Filter) (Page, error) {
	limit := f.EffectiveLimit()
	rows, err := r.RowStore.ListAuditRows(ctx, coffer.AuditQuery{Limit: limit,
		Principal: f.Principal, Action: f.Action, Since: f.Since, After: f.After})
	if err != nil {
		return Page{}, err
	}
	var p Page
	for i := range rows {
		row := &rows[i]
		p.Last = &Cursor{Time: row.Time, Node: row.Node, Seq: row.Seq}
		e, err := decodeRow(row)
		var cerr *CorruptEventError
		if errors.As(err, &cerr) {
			p.Corrupt = append(p.Corrupt, cerr)
		} else if err != nil {
			return Page{}, err
		}
		if cerr != nil && cerr.Column == "" {
			continue // no body to answer from
		}
		if f.Matches(&e) {
			p.Events = append(p.Events, e)
		}
	}
	p.More = len(rows) == limit
	return p, nil
}
