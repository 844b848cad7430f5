package coffer

import "time"

// AuditColumns are the values a store keeps beside an audit event's body,
// to index and filter on (node, seq, id, time, principal, action, hash,
// prev_hash). The hash chain covers only the body, so a column can be
// edited without breaking it: the audit log compares them with the body on
// every read (audit.CheckColumns).
type AuditColumns struct {
	Node      string
	Seq       uint64
	ID        string
	Time      time.Time // compared in microseconds, the stored precision
	Principal string    // the body's principal_id
	Action    string
	Hash      string
	PrevHash  string
}

// AuditRow is one audit event as a store keeps it: its columns and its
// JSON body, the event as it was hashed. A store writes and reads rows as
// they are; the audit log encodes events into them and decodes events,
// from the body only, out of them.
type AuditRow struct {
	AuditColumns
	Body string
}

// AuditRecord is one audit event as a store keeps it since migration 20
// (table audit_log): the columns it filters and orders on, the hash as
// its 32 bytes, and the rest of the event in Body, the audit log's compact
// encoding (audit.AppendBody). No field is kept twice.
type AuditRecord struct {
	Node      string
	Seq       uint64
	Time      time.Time // microsecond precision
	Principal string
	Action    string
	Hash      []byte
	Body      []byte
}

// AuditCheckpoint is a signed statement that a node's audit chain had, at
// Seq, the event whose hash is Hash. Signature is Ed25519 over
// audit.CheckpointMessage.
type AuditCheckpoint struct {
	Node      string    `json:"node"`
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"` // UTC, microsecond precision
	Signature []byte    `json:"signature"`
	// KeyVersion is the version of the audit signing key that signed it;
	// 0 (checkpoints written before audit keys could rotate) means 1.
	KeyVersion uint32 `json:"key_version"`
}

// AuditCursor is a position in the audit listing's (Time, Node, Seq)
// order.
type AuditCursor struct {
	Time time.Time
	Node string
	Seq  uint64
}

// AuditQuery selects audit rows by their columns, in (Time, Node, Seq)
// order. Zero fields match everything. The columns only narrow down which
// rows are read: the audit log answers from the bodies.
type AuditQuery struct {
	// Limit is the most rows read; the caller bounds it.
	Limit int
	// Principal matches the principal column exactly.
	Principal string
	// Action matches the action column exactly.
	Action string
	// Since keeps rows with time at or after it.
	Since time.Time
	// After, if set, keeps rows strictly after it in list order.
	After *AuditCursor
}

// AuditKeyVersion returns the audit key version a recorded KeyVersion
// stands for: v itself, or 1 for 0 (a log written before audit keys could
// rotate records none, and had only version 1).
func AuditKeyVersion(v uint32) uint32 { return max(v, 1) }

// AuditSegment is the database's record of a sealed segment of one node's
// audit chain (events FirstSeq to LastSeq, closed by the signed checkpoint
// at LastSeq) that was written to the audit archive and read back
// verified (Verified). Pruned is when its events were deleted from the
// database (zero while they are still there).
type AuditSegment struct {
	Node      string
	FirstSeq  uint64
	LastSeq   uint64
	PrevHash  string // hash of the event before FirstSeq (or the genesis hash)
	HeadHash  string // hash of the event at LastSeq
	FirstTime time.Time
	LastTime  time.Time
	Bytes     int64 // size of the archived file
	Verified  time.Time
	Pruned    time.Time
}
