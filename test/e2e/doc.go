// Package e2e holds Coffer's black-box end-to-end tests: a real server
// started by internal/testserver, serving real HTTPS on a loopback port,
// against SQLite and PostgreSQL, driven through the public Go SDK and raw
// HTTP. Its tests never mock a component that can run for real here, and
// never send traffic anywhere but loopback.
package e2e
