package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Store keeps the audit log durably. store/sqlite and store/postgres
// implement it. Events are kept as written: the store indexes some fields as
// columns and keeps each event's JSON (json.Marshal of the Event) as its
// body, and never modifies or deletes either. Events read back are decoded
// from the body (json.Unmarshal into an Event), so that verification checks
// exactly what is stored. All methods are safe for concurrent use.
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
	// body that does not decode is reported with the error of DecodeStored
	// (a *CorruptEventError), so that Verify can name the event.
	ScanAudit(ctx context.Context, node string, afterSeq uint64, fn func(Event) error) error

	// AuditNodes returns every node that has events or checkpoints, sorted.
	AuditNodes(ctx context.Context) ([]string, error)

	// Checkpoints returns node's checkpoints in ascending Seq order.
	Checkpoints(ctx context.Context, node string) ([]Checkpoint, error)

	// ListAudit returns at most f.Limit events of every node matching f, in
	// ascending (Time, Node, Seq) order.
	ListAudit(ctx context.Context, f Filter) ([]Event, error)
}

// CorruptEventError says that a stored event's body does not decode: it was
// edited outside Coffer. Verify turns it into a *VerifyError naming Seq.
type CorruptEventError struct {
	Node string
	Seq  uint64 // from the store's seq column
	Err  error
}

// Error implements error.
func (e *CorruptEventError) Error() string {
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
type Cursor struct {
	Time time.Time
	Node string
	Seq  uint64
}

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
