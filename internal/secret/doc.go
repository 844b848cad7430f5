// Package secret holds the types that carry key material through Coffer.
//
// It owns [Key]: bytes that must never be printed, logged, marshalled or
// compared with ==. A Key redacts itself in every formatting path (fmt verbs,
// JSON, text encoders, log/slog), compares in constant time and can be zeroed.
// [Password] (passwords, client secrets, TOTP and recovery codes) and
// [Value] (plaintext values) do the same for the other secrets that cross
// package boundaries.
//
// It must never print, log or marshal the bytes it holds, never compare them
// in variable time, and never make randomness of its own: callers pass the
// io.Reader that [Random] draws from.
//
// # Threat model
//
// The types defend against accidents — a key formatted into an error, a
// struct holding a key dumped into a log line or a JSON document. They do not
// defend against code that calls [Key.Bytes] on purpose, nor against memory
// disclosure: Go may copy memory (the garbage collector, stack growth), so
// [Key.Zero] shortens the life of key bytes but cannot promise that no copy
// remains.
package secret
