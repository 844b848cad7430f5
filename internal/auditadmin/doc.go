// Package auditadmin holds the audit log's use cases that need more than
// the audit package: the audit keys kept in the keyring (the writer's key
// source, the verifiers' lookup), the audit trail of offline commands
// (the NODE/offline chain), delivery to the witness, verification of a
// serving node's log, listing and tailing with tampered rows flagged, the
// shredding of searched-value MACs at an erasure, and the benchmark-only
// flush floor store.
//
// It must never write an audit event anywhere but through an audit.Writer
// (no row of its own), never make a version of an audit key when asked to
// verify (a missing one is a finding), and never run an offline operation
// whose first event could not be written.
package auditadmin
