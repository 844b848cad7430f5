// Package vault holds Coffer's use cases over collections, records, search
// and data subjects: validate by schema, decide by policy, seal and index,
// store, and shape each answer by the caller's field views. After a blind
// index key rotation, search looks under every active version and Reindex
// moves the entries to the newest.
//
// Every call names the principal and fills a coffer.AccessNote so the
// caller can audit it. Values are plaintext only in memory here, between
// validation and sealing or between opening and the answer. This package
// must never log, return in an error, or store a plaintext value: errors
// name fields, never their contents, and the store sees only envelopes and
// keyed MACs.
package vault
