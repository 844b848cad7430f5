// Package httpapi is Coffer's HTTP face: routes (Go 1.22 ServeMux patterns),
// strict JSON codecs, problem+json errors (RFC 9457) from one code→status
// table, request ids, security headers, body limits, authentication of
// bearer tokens and client certificates, per-principal rate limits, and the
// audit write that must succeed before any answer leaves.
//
// Handlers decode, call a use case and encode; they hold no business rules
// and make no authorization decision: each use case decides for the caller
// it is given (identityadmin, policystore, detect.Response,
// auditadmin.Query, inspect, cluster.Directory, keyadmin, vault, token,
// transit), so this package imports no policy, store or keyring. Each
// dependency is a small interface of what one route group uses.
// This package must never put a submitted value in an error, a log line, a
// metric label or an audit event, and never answer 500 for bad input.
package httpapi
