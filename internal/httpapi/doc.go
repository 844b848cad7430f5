// Package httpapi is Coffer's HTTP face: routes (Go 1.22 ServeMux patterns),
// strict JSON codecs, problem+json errors (RFC 9457) from one code→status
// table, request ids, security headers, body limits, authentication of
// bearer tokens and client certificates, per-principal rate limits, and the
// audit write that must succeed before any answer leaves.
//
// Handlers decode, call a use case and encode; they hold no business rules.
// This package must never put a submitted value in an error, a log line, a
// metric label or an audit event, and never answer 500 for bad input.
package httpapi
