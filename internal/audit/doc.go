// Package audit owns Coffer's tamper-evident audit log: the event type, its
// canonical encoding and hash chain, signed checkpoints, the group-committing
// Writer, the sinks that copy events out (ECS JSON lines to a file or a
// stream) and the verifiers that prove a log intact or name the first event
// that is not.
//
// # What an event may hold
//
// An event says who did what to which resource, what the policy decided and
// why, how the request ended and how many records or values it touched. It
// names fields, never their contents. Where an event must identify a value
// (a search term, a token) it carries a keyed HMAC of it (ValueHMAC), under
// an audit-only key that never leaves the server and is never a blind
// index or token key, bound to the principal. A submitted value, a plaintext, a
// token, a key or a secret must never be put into any field of an Event:
// the log is kept forever, copied to files and shipped to log stores, and
// cannot be edited afterwards by design.
//
// # The chain
//
// Each node writes its own chain. Event n of node N has Seq n (from 1), ID
// "N:n", and
//
//	Hash = hex(HMAC-SHA256(hmacKey[KeyVersion], rawPrevHash || Canonical(event)))
//
// where Canonical is a fixed-order, length-prefixed encoding of every field
// except Hash (see Canonical), and the first event's PrevHash is Genesis(N).
// Every CheckpointEvery events, every CheckpointInterval and on Close, the
// Writer signs a Checkpoint (node, seq, hash, time) with an Ed25519 key,
// and records the version of that key in the checkpoint.
//
// # Key rotation
//
// Both keys are versioned. Each event records the version of the HMAC key
// that chained it (KeyVersion, JSON key_version), each checkpoint the
// version of the key that signed it; a log written before the keys could
// rotate records none, which means version 1, and its hashes and
// signatures are unchanged (a version is bound into the hash or the signed
// message only when it is above 1). The Writer asks its KeySource for the
// current versions once per batch: after a rotation of the HMAC key the
// next event is chained under the new version, its PrevHash still linking
// to the event before; after a rotation of the signing key the events
// written since the last checkpoint are first sealed by a checkpoint under
// the old key. Verification looks every version up (KeyLookup), so no
// version that chained or signed anything may ever be retired or
// destroyed; a version that is unknown, or older than the one before it in
// the same chain, is a finding naming the event.
//
// # What verification proves, and what it cannot
//
// Verify detects any edit of a stored event, a deleted, inserted or
// reordered event, a forged checkpoint, and a log cut back to before its
// last checkpoint. Events are stored compactly (since migration 20, table
// audit_log): each field once, the columns a listing filters on being
// fields of the event, hashed like the rest ([AppendBody]), so a column
// edited to hide an event from a filtered listing is an edited event;
// [Rows.ListAuditPageChecked], behind the events API, recomputes each
// listed event's hash and leaves such an event out, reporting it.
// Events stored before, as JSON rows of audit_events, kept copies of some
// fields as columns beside the body (node, seq, id, time, principal,
// action, hash, prev_hash: [Columns]); those are checked against the body
// ([CheckColumns]) and named when they differ. Verify cannot detect a tail cut
// beyond the last checkpoint (the newest events removed with every
// checkpoint after them): nothing in the store then remembers that those
// events existed. That is why the store's audit tables are append-only for
// the application role, why checkpoints are written at least every
// CheckpointInterval and on shutdown, and why copies are kept where the
// store's attacker cannot rewrite them: the file sink receives every event
// and checkpoint, and a witness (package witness) every checkpoint.
// VerifyAll compares the store with them, both ways: an event or a
// checkpoint in one and not the other, or a different hash, is a finding
// naming the node and seq ([Findings]).
//
// Anyone holding the HMAC key can recompute hashes, so the key stays in the
// keyring; the checkpoint signature needs only the public key to check, and
// only the signing key to forge.
//
// # What this package must never do
//
// It never holds a value, never logs an event's contents outside the sinks,
// never lets an event through when the store append failed or the keys
// could not be had (Log fails closed), and never modifies or deletes a written event. It has no HTTP.
package audit
