// Package coffer holds Coffer's domain types — principals, collections,
// records, data keys and their typed ids (KeyID: the only place that
// parses or prints a key id's text form; a test keeps every other package
// from matching key id prefixes by hand) — and its error type.
//
// It owns the vocabulary every other package speaks. It imports only the
// standard library (a test enforces it) and must never hold behaviour that
// needs a database, a key or the network: adapters depend on it, never the
// reverse.
package coffer
