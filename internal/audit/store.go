package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Store keeps the audit log durably. [Rows] over the database (store.DB,
// on SQLite or PostgreSQL) implements it. Events are kept as written and
// never modified or deleted: since migration 20 each in the compact form
// ([AppendBody]: the fields queries filter on as columns, the rest in the
// body, each field once), before it as JSON rows, which indexed some
// fields as columns ([Columns]) beside the event's JSON body. Events read
// back are decoded from what is stored, so that verification checks
// exactly that; a JSON row's columns are never trusted: they are checked
// against its body ([CheckColumns]). All methods are safe for concurrent
// use.
type Store interface {
	// AppendAudit writes events and checkpoints in one transaction: all or
	// nothing, durable (committed and synced) when it returns nil. It must
	// fail, writing nothing, if any (node, seq) of an event or a checkpoint
	// already exists. events or checkpoints may be empty.
	AppendAudit(ctx context.Context, events []Event, checkpoints []Checkpoint) error

	// AuditHead returns the Seq and Hash of node's last event (highest
	// seq), or 0, "" and a nil error when node has none.
	AuditHead(ctx context.Context, node string) (seq uint64, hash string, err error)

	// ScanAudit calls fn for each event of node with Seq > afterSeq, in
	// ascending Seq order (events appended while it runs may be included).
	// It stops and returns fn's error as is when fn returns one. A stored
	// body that does not decode, or a row whose columns disagree with its
	// body, is reported with the error of DecodeStored or CheckColumns (a
	// *CorruptEventError), so that Verify can name the event.
	ScanAudit(ctx context.Context, node string, afterSeq uint64, fn func(Event) error) error

	// AuditNodes returns every node that has events or checkpoints, sorted.
	AuditNodes(ctx context.Context) ([]string, error)

	// Checkpoints returns node's checkpoints in ascending Seq order.
	Checkpoints(ctx context.Context, node string) ([]Checkpoint, error)

	// ListAudit returns at most f.Limit events of every node matching f, in
	// ascending (Time, Node, Seq) order. Like a Page's Events, each is
	// decoded from its body and matches f by its body; rows whose columns
	// disagree with their bodies are left out.
	ListAudit(ctx context.Context, f Filter) ([]Event, error)
}

// CorruptEventError says that a stored event's body does not decode, or
// that a column stored beside it (Column) disagrees with it: it was edited
// outside Coffer. Verify turns it into a *VerifyError naming Seq.
type CorruptEventError struct {
	Node string
	Seq  uint64 // from the store's seq column
	// Column names the column that disagrees with the body; "" when the
	// body itself does not decode.
	Column string
	Err    error
}

// Error implements error.
func (e *CorruptEventError) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("audit: stored event %s: column %s disagrees with the hashed body", EventID(e.Node, e.Seq), e.Column)
	}
	return fmt.Sprintf("audit: stored event %s does not decode: %v", EventID(e.Node, e.Seq), e.Err)
}

// Unwrap returns the decoding error.
func (e *CorruptEventError) Unwrap() error { return e.Err }

// DecodeStored decodes a stored event body for Store implementations; node
// and seq are the row's columns, used only to name the event on failure.
func DecodeStored(node string, seq uint64, body []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return Event{}, &CorruptEventError{Node: node, Seq: seq, Err: err}
	}
	return e, nil
}

// Columns are the values a store keeps beside an event's body, to index
// and filter on (node, seq, id, time, principal, action, hash, prev_hash).
// The hash chain covers only the body, so a column can be edited without
// breaking it: CheckColumns compares them with the body on every read.
type Columns = coffer.AuditColumns

// ColumnsOf returns the columns a store keeps for e.
func ColumnsOf(e *Event) Columns {
	return Columns{Node: e.Node, Seq: e.Seq, ID: e.ID, Time: e.Time, Principal: e.PrincipalID,
		Action: e.Action, Hash: e.Hash, PrevHash: e.PrevHash}
}

// CheckColumns returns nil when c are the columns of e, the event decoded
// from the same row's body, and otherwise a *CorruptEventError naming the
// first column that differs (and the row by its node and seq columns).
func CheckColumns(c Columns, e *Event) error {
	want := ColumnsOf(e)
	col := ""
	switch {
	case c.Node != want.Node:
		col = "node"
	case c.Seq != want.Seq:
		col = "seq"
	case c.ID != want.ID:
		col = "id"
	case c.Time.UnixMicro() != want.Time.UnixMicro():
		col = "time"
	case c.Principal != want.Principal:
		col = "principal"
	case c.Action != want.Action:
		col = "action"
	case c.Hash != want.Hash:
		col = "hash"
	case c.PrevHash != want.PrevHash:
		col = "prev_hash"
	default:
		return nil
	}
	return &CorruptEventError{Node: c.Node, Seq: c.Seq, Column: col,
		Err: fmt.Errorf("column %s disagrees with the hashed body", col)}
}

// Page is one answer of a listing: the events matching the filter, and
// what the store read but could not trust.
type Page struct {
	// Events match the filter by their bodies, in (Time, Node, Seq) order.
	Events []Event
	// Corrupt lists the rows read whose body does not decode or whose
	// columns disagree with their body (a *CorruptEventError each). A row
	// whose body decodes and matches the filter is still in Events: the
	// answer comes from the body, never from a column.
	Corrupt []*CorruptEventError
	// Last is the position, by the store's columns, of the last row read
	// (nil when none was): pass it as Filter.After for the next page.
	Last *Cursor
	// More is true when the store read Filter.Limit rows, so more may
	// follow.
	More bool
	// Archived names the sealed segments (SegmentID) pruned from the
	// database whose events fall in the filter's time range: that part of
	// the history is in the audit archive only.
	Archived []string
}

// Matches reports whether e, decoded from a body, matches f's principal,
// action and since; f.After is a position in the store's order and is
// left to the store.
func (f Filter) Matches(e *Event) bool {
	return (f.Principal == "" || e.PrincipalID == f.Principal) &&
		(f.Action == "" || e.Action == f.Action) &&
		(f.Since.IsZero() || e.Time.UnixMicro() >= f.Since.UnixMicro())
}

// List limits for Filter.Limit.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Filter selects events for Store.ListAudit. Zero fields match everything.
type Filter struct {
	// Limit is the most events returned: DefaultListLimit when <= 0, at
	// most MaxListLimit (a store clamps larger values).
	Limit int
	// Principal matches PrincipalID exactly.
	Principal string
	// Action matches Action exactly.
	Action string
	// Since keeps events with Time at or after it.
	Since time.Time
	// After, if set, keeps events strictly after it in list order: pass
	// CursorOf the last event of the previous page.
	After *Cursor
}

// Cursor is a position in ListAudit's (Time, Node, Seq) order.
type Cursor = coffer.AuditCursor

// CursorOf returns the position of e.
func CursorOf(e Event) Cursor { return Cursor{Time: e.Time, Node: e.Node, Seq: e.Seq} }

// EffectiveLimit returns f.Limit brought into [1, MaxListLimit], with
// DefaultListLimit for <= 0.
func (f Filter) EffectiveLimit() int {
	switch {
	case f.Limit <= 0:
		return DefaultListLimit
	case f.Limit > MaxListLimit:
		return MaxListLimit
	}
	return f.Limit
}
