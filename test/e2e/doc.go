// Package e2e holds Coffer's black-box end-to-end tests: a real server
// built by internal/app, serving real HTTPS on a loopback port, against
// SQLite and PostgreSQL, driven through the public Go SDK and raw HTTP.
package e2e
