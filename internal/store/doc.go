// Package store keeps Coffer's state in SQLite (embedded default, pure Go)
// or PostgreSQL (for several stateless nodes): collections, sealed records
// and their blind indexes, wrapped data keys, clients, users, signing keys,
// revocations, lockout counters, the policy, tokens and the append-only
// audit log.
//
// One set of SQL statements serves both backends: every statement uses
// numbered parameters ($1, $2, …), which both SQLite and PostgreSQL bind, and
// no value is ever formatted into SQL text. The schema is migrated by goose
// from the embedded, per-dialect files under migrations/.
//
// The store sees only ciphertexts, keyed MACs and hashes: it must never be
// handed a plaintext value, an unwrapped key or a secret, and its errors
// never contain row contents.
package store
