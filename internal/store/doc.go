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
//
// It is an adapter: it imports only the domain (internal/coffer) and the
// envelope format (crypto/envelope), never a service. What it keeps for a
// service is a domain row type the service converts to and from: audit
// events as coffer.AuditRow (columns and the JSON body, which the audit
// package encodes and decodes), detector and quota counters as
// coffer.CountAdd.
package store
