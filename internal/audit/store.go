package audit

import (
	"context"
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
	// ascending Seq order, from one consistent read. It stops and returns
	// fn's error as is when fn returns one.
	ScanAudit(ctx context.Context, node string, afterSeq uint64, fn func(Event) error) error

	// AuditNodes returns every node that has events or checkpoints, sorted.
	AuditNodes(ctx context.Context) ([]string, error)

	// Checkpoints returns node's checkpoints in ascending Seq order.
	Checkpoints(ctx context.Context, node string) ([]Checkpoint, error)

	// ListAudit returns at most f.Limit events of every node matching f, in
	// ascending (Time, Node, Seq) order.
	ListAudit(ctx context.Context, f Filter) ([]Event, error)
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
