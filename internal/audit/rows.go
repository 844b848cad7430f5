package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
//
// Since migration 20 events are appended in their compact form
// (coffer.AuditRecord, AppendAuditRecords); the rows of events written
// before, in JSON (coffer.AuditRow, the *AuditRows methods and
// AuditHead), are only read. AuditRecordHash returns the hash of node's
// record seq, and false when it has none; AuditNodes covers both kinds.
type RowStore interface {
	AppendAuditRows(ctx context.Context, rows []coffer.AuditRow, checkpoints []Checkpoint) error
	AuditHead(ctx context.Context, node string) (seq uint64, hash string, err error)
	ScanAuditRows(ctx context.Context, node string, afterSeq uint64, fn func(*coffer.AuditRow) error) error
	AuditNodes(ctx context.Context) ([]string, error)
	Checkpoints(ctx context.Context, node string) ([]Checkpoint, error)
	ListAuditRows(ctx context.Context, q coffer.AuditQuery) ([]coffer.AuditRow, error)

	AppendAuditRecords(ctx context.Context, recs []coffer.AuditRecord, checkpoints []Checkpoint) error
	AuditLogHead(ctx context.Context, node string) (seq uint64, hash []byte, err error)
	AuditRecordHash(ctx context.Context, node string, seq uint64) ([]byte, bool, error)
	ScanAuditRecords(ctx context.Context, node string, afterSeq uint64, fn func(*coffer.AuditRecord) error) error
	ListAuditRecords(ctx context.Context, q coffer.AuditQuery) ([]coffer.AuditRecord, error)
}

// Rows is the Store kept in a RowStore: it appends each event as a
// compact record (its columns and AppendBody), and reads events from both
// kinds of rows: a compact record decoded from its columns and body
// (DecodeBody), a JSON row from its body, checked against the row's columns
// (DecodeStored, CheckColumns).
type Rows struct{ RowStore }

// OnRows returns the Store that keeps events in rs.
func OnRows(rs RowStore) Rows { return Rows{rs} }

// AppendAudit implements Store. An event's record leaves its PrevHash out
// when it is the hash of the record just before it in the same append
// (seq-1 of the same node), which readers take it from.
func (r Rows) AppendAudit(ctx context.Context, events []Event, checkpoints []Checkpoint) error {
	if len(events) == 0 && len(checkpoints) == 0 {
		return nil
	}
	recs, err := Records(events)
	if err != nil {
		return err
	}
	return r.RowStore.AppendAuditRecords(ctx, recs, checkpoints)
}

// Records encodes events, appended in that order, as the records a store
// keeps (see AppendAudit).
func Records(events []Event) ([]coffer.AuditRecord, error) {
	// Encoded before the store's transaction: on SQLite its closure runs
	// in the one serial write path. One buffer holds every hash and body.
	recs := make([]coffer.AuditRecord, len(events))
	ends := make([]int, len(events))
	buf := make([]byte, 0, len(events)*(sha256.Size+160))
	for i := range events {
		e := &events[i]
		h, ok := decodeHash(e.Hash)
		if !ok {
			return nil, fmt.Errorf("store: encode audit event %s: hash is not a 64-digit hex hash", e.ID)
		}
		omit := i > 0 && events[i-1].Node == e.Node && events[i-1].Seq+1 == e.Seq && events[i-1].Hash == e.PrevHash
		buf = append(buf, h[:]...)
		var err error
		if buf, err = AppendBody(buf, e, omit); err != nil {
			return nil, fmt.Errorf("store: encode audit event %s: %w", e.ID, err)
		}
		ends[i] = len(buf)
		recs[i] = coffer.AuditRecord{Node: e.Node, Seq: e.Seq, Time: e.Time, Principal: e.PrincipalID, Action: e.Action}
	}
	start := 0
	for i := range recs {
		mid := start + sha256.Size
		recs[i].Hash, recs[i].Body = buf[start:mid:mid], buf[mid:ends[i]:ends[i]]
		start = ends[i]
	}
	return recs, nil
}

// prevSource finds the PrevHash of records that leave it out: the hash of
// the event read just before when it is seq-1 of the same node, else the
// hash of record seq-1, else that of the checkpoint at seq-1 (the events
// up to it archived), else none.
type prevSource struct {
	rs   RowStore
	last map[string]seen // by node
}

type seen struct {
	seq  uint64
	hash string
}

func (p *prevSource) saw(e *Event) {
	if p.last == nil {
		p.last = map[string]seen{}
	}
	p.last[e.Node] = seen{e.Seq, e.Hash}
}

func (p *prevSource) prev(ctx context.Context, node string, seq uint64) (string, error) {
	if seq <= 1 {
		return "", nil
	}
	if l, ok := p.last[node]; ok && l.seq == seq-1 && l.hash != "" {
		return l.hash, nil
	}
	h, ok, err := p.rs.AuditRecordHash(ctx, node, seq-1)
	if err != nil {
		return "", err
	}
	if ok {
		return hex.EncodeToString(h), nil
	}
	cps, err := p.rs.Checkpoints(ctx, node)
	if err != nil {
		return "", err
	}
	for _, c := range cps {
		if c.Seq == seq-1 {
			return c.Hash, nil
		}
	}
	return "", nil
}

// decodeRecord returns the record's event, with a *CorruptEventError when
// its hash or body does not decode (and a zero event). A body that leaves
// PrevHash out takes it from ps.
func decodeRecord(ctx context.Context, r *coffer.AuditRecord, ps *prevSource) (Event, error) {
	e := Event{Node: r.Node, Seq: r.Seq, Time: r.Time, PrincipalID: r.Principal, Action: r.Action}
	if len(r.Hash) != sha256.Size {
		return Event{}, &CorruptEventError{Node: r.Node, Seq: r.Seq, Err: errors.New("hash is not 32 bytes")}
	}
	e.Hash = hex.EncodeToString(r.Hash)
	if err := DecodeBody(&e, r.Body); err != nil {
		return Event{}, &CorruptEventError{Node: r.Node, Seq: r.Seq, Err: err}
	}
	if e.PrevHash == "" {
		p, err := ps.prev(ctx, r.Node, r.Seq)
		if err != nil {
			return Event{}, err
		}
		e.PrevHash = p
	}
	ps.saw(&e)
	return e, nil
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

// ScanAudit implements Store: node's JSON rows, then its compact records
// (each table in seq order; a node's chain goes on from the first into the
// second). A row whose body does not decode or whose columns disagree with
// it ends the scan with its *CorruptEventError.
func (r Rows) ScanAudit(ctx context.Context, node string, afterSeq uint64, fn func(Event) error) error {
	ps := &prevSource{rs: r.RowStore}
	err := r.RowStore.ScanAuditRows(ctx, node, afterSeq, func(row *coffer.AuditRow) error {
		// An undecodable (edited) body, or a column edited apart from its
		// body, is a verification finding naming that event, not a
		// generic error.
		e, err := decodeRow(row)
		if err != nil {
			return err
		}
		ps.saw(&e)
		return fn(e)
	})
	if err != nil {
		return err
	}
	return r.RowStore.ScanAuditRecords(ctx, node, afterSeq, func(rec *coffer.AuditRecord) error {
		e, err := decodeRecord(ctx, rec, ps)
		if err != nil {
			return err
		}
		return fn(e)
	})
}

// AuditHead implements Store: the last compact record of node, else its
// last JSON row.
func (r Rows) AuditHead(ctx context.Context, node string) (uint64, string, error) {
	seq, h, err := r.RowStore.AuditLogHead(ctx, node)
	if err != nil || seq > 0 {
		return seq, hex.EncodeToString(h), err
	}
	return r.RowStore.AuditHead(ctx, node)
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
// It does not recompute hashes: a compact record's columns are its
// fields, so an edited one is only seen by ListAuditPageChecked (or
// Verify).
func (r Rows) ListAuditPage(ctx context.Context, f Filter) (Page, error) {
	return r.listAuditPage(ctx, f, nil)
}

// ErrHashMismatch is the Err of a *CorruptEventError (with no Column) for
// a stored event whose hash, recomputed from what is stored (columns, body
// and prev_hash), is not the stored one: a column or the body was edited.
var ErrHashMismatch = errors.New("hash does not match the stored event (edited)")

// ListAuditPageChecked is ListAuditPage that also recomputes each row's
// hash (one HMAC-SHA256 under the key version the event names, keys
// looking it up once per version per call) and compares it with the
// stored one: a row whose hash differs, or that names a key version keys
// does not have, is left out of Events and listed in Corrupt (Err
// ErrHashMismatch, no Column). Its PrevHash is the body's, else that of
// the event before it on the page, else the stored hash of seq-1 (or its
// checkpoint), as ScanAudit derives it. A key that cannot be read fails
// the listing.
func (r Rows) ListAuditPageChecked(ctx context.Context, f Filter, keys KeyLookup) (Page, error) {
	if keys == nil {
		return Page{}, errors.New("audit: checked listing: no keys")
	}
	vk := newVerifyKeys(keys)
	return r.listAuditPage(ctx, f, func(e *Event) error { return checkHash(ctx, vk, e) })
}

// checkHash returns nil when e.Hash is e's hash, a *CorruptEventError
// (ErrHashMismatch) when it is not or when e names a key version that does
// not exist, and another error when a key cannot be read.
func checkHash(ctx context.Context, vk *verifyKeys, e *Event) error {
	c, err := vk.chainer(ctx, EffectiveVersion(e.KeyVersion))
	if errors.Is(err, errNoKey) {
		return &CorruptEventError{Node: e.Node, Seq: e.Seq, Err: ErrHashMismatch}
	}
	if err != nil {
		return fmt.Errorf("audit: list: %w", err)
	}
	if ok, err := c.check(e); err != nil || !ok {
		return &CorruptEventError{Node: e.Node, Seq: e.Seq, Err: ErrHashMismatch}
	}
	return nil
}

// listAuditPage is ListAuditPage, with check (when not nil) run on each
// event decoded.
func (r Rows) listAuditPage(ctx context.Context, f Filter, check func(*Event) error) (Page, error) {
	limit := f.EffectiveLimit()
	q := coffer.AuditQuery{Limit: limit, Principal: f.Principal, Action: f.Action, Since: f.Since, After: f.After}
	rows, err := r.RowStore.ListAuditRows(ctx, q)
	if err != nil {
		return Page{}, err
	}
	recs, err := r.RowStore.ListAuditRecords(ctx, q)
	if err != nil {
		return Page{}, err
	}
	var (
		p    Page
		ps   = &prevSource{rs: r.RowStore}
		read int
		add  = func(e Event, err error) error {
			var cerr *CorruptEventError
			if err != nil && !errors.As(err, &cerr) {
				return err
			}
			if check != nil && (cerr == nil || cerr.Column != "") {
				// A decoded event, even a JSON row's body whose column
				// disagrees with it: its hash says whether it was edited.
				var herr *CorruptEventError
				if err := check(&e); errors.As(err, &herr) {
					cerr = herr
				} else if err != nil {
					return err
				}
			}
			if cerr != nil {
				p.Corrupt = append(p.Corrupt, cerr)
			}
			if cerr != nil && cerr.Column == "" {
				return nil // nothing trusted to answer from
			}
			if f.Matches(&e) {
				p.Events = append(p.Events, e)
			}
			return nil
		}
	)
	// Both tables' rows in (time, node, seq) order, up to limit in all.
	for read < limit && (len(rows) > 0 || len(recs) > 0) {
		read++
		if len(recs) == 0 || (len(rows) > 0 && listedBefore(cursorOfRow(&rows[0]), cursorOfRecord(&recs[0]))) {
			row := &rows[0]
			rows = rows[1:]
			c := cursorOfRow(row)
			p.Last = &c
			if err := add(decodeRow(row)); err != nil {
				return Page{}, err
			}
			continue
		}
		rec := &recs[0]
		recs = recs[1:]
		c := cursorOfRecord(rec)
		p.Last = &c
		if err := add(decodeRecord(ctx, rec, ps)); err != nil {
			return Page{}, err
		}
	}
	p.More = read == limit
	return p, nil
}

func cursorOfRow(r *coffer.AuditRow) Cursor {
	return Cursor{Time: r.Time, Node: r.Node, Seq: r.Seq}
}

func cursorOfRecord(r *coffer.AuditRecord) Cursor {
	return Cursor{Time: r.Time, Node: r.Node, Seq: r.Seq}
}

// listedBefore orders cursors as listings do: by time (in microseconds), node,
// seq.
func listedBefore(a, b Cursor) bool {
	at, bt := a.Time.UnixMicro(), b.Time.UnixMicro()
	if at != bt {
		return at < bt
	}
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	return a.Seq < b.Seq
}

// PrunedStore is implemented by a Store whose oldest events may have been
// pruned after they were archived in sealed segments: AuditPrunedThrough
// returns the last seq of node's pruned events and that event's hash (0
// and "" when none were pruned). A pruned chain is verified from the
// signed checkpoint at that seq, which is never pruned.
type PrunedStore interface {
	AuditPrunedThrough(ctx context.Context, node string) (seq uint64, hash string, err error)
}

// AuditPrunedThrough implements PrunedStore when the RowStore does (0
// otherwise: nothing was pruned).
func (r Rows) AuditPrunedThrough(ctx context.Context, node string) (uint64, string, error) {
	if p, ok := r.RowStore.(PrunedStore); ok {
		return p.AuditPrunedThrough(ctx, node)
	}
	return 0, "", nil
}
