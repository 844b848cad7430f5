// Package vault holds Coffer's use cases over collections, records, search
// and data subjects: validate by schema, decide by policy, seal and index,
// store, and shape each answer by the caller's field views. After a blind
// index key rotation, search looks under every active version and Reindex
// moves the entries to the newest.
//
// Records are tamper-evident at rest (seal.go): each value's AAD binds its
// record's revision, a seal authenticates the metadata and field set, and
// every read, update and search hit is checked before anything is decided
// or shown; a failure is a 409 problem "integrity" and is noted
// (AccessNote.Tampered) for a security event. A search names only fields
// the caller sees in plain, and checks each hit's values after decryption.
//
// Every call names the principal and fills a coffer.AccessNote so the
// caller can audit it. Values are plaintext only in memory here, between
// validation and sealing or between opening and the answer. This package
// must never log, return in an error, or store a plaintext value: errors
// name fields, never their contents, and the store sees only envelopes and
// keyed MACs.
package vault
