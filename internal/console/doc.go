// Package console is Coffer's web console, served at /ui/ on the API's own
// TLS listener: server-rendered html/template pages, one stylesheet and one
// small script, all embedded in the binary (no CDN, no Node at run time).
//
// # An in-process client of the API
//
// Every page that shows or changes data does so by calling Coffer's own
// HTTP API in-process (Config.API), with the signed-in user's access token
// and the browser's address: the same authentication, suspension check,
// rate limit, policy decision, field views and audit event as a request
// from outside. The console holds no store, keyring or vault of its own, so
// it cannot show what the policy hides (a masked field stays masked, a
// denied one is absent) or act without an audit event naming the user.
// What it computes itself touches no data: compiling a policy the user
// types (validation, test tables, the self-lockout check) and drawing
// charts from audit events the API returned.
//
// # Sessions
//
// Sessions live in this node's memory, keyed by the SHA-256 of a random
// 256-bit id held in a __Host- cookie (HttpOnly, Secure, SameSite=Strict,
// Path=/). The id changes on sign-in and on the second factor. A session
// ends at its idle timeout, at its access token's expiry (the absolute
// timeout, shown on every page), on sign-out (the token is revoked), and
// when the API refuses its token. Every state change is a POST carrying the
// session's CSRF token (and, when the browser sends one, a same-origin
// Origin); destructive actions (erasing a subject, retiring a key, saving a
// policy) also need a sign-in of the last minutes, asked again with the
// password and the second factor.
//
// # Must never
//
// This package must never read or write the store, keys or audit log
// directly, put a value, secret, token or password in a log line, a URL or
// an error page, serve a third-party asset, or emit inline script: the
// Content-Security-Policy forbids it and the tests fail on a violation.
package console
