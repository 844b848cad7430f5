// Package inspect is the inspection and redaction of free text for a
// caller (POST /v1/inspect, /v1/redact): who may (read on inspect), how
// much text one request may hold, and what is counted in its audit note.
// The finding itself is the public redact package's.
//
// This package must never return, log or note the matched text: a
// finding is a type, offsets and a confidence.
package inspect
