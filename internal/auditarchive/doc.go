// Package auditarchive keeps the audit log's sealed history out of the
// database: it writes sealed segments of each node's chain (the events up
// to a signed checkpoint, audit.EncodeSegment) to an Archive (a directory
// on another volume, FileArchive; an object store can implement the same
// interface), reads each back and verifies it before the database records
// it, prunes archived segments from the database once they are older than
// the retention, and verifies the archive and the database as one chain
// per node.
//
// # What this package must never do
//
// It never prunes an event whose segment was not written, synced and read
// back verified (the database's trigger refuses it too), never prunes a
// node's newest event (the chain's head must stay where the writer finds
// it), never prunes without first writing an audit event that says so
// (when given a log), never overwrites an archived segment, and never
// reads or logs a value: events hold none.
package auditarchive
