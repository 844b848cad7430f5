// Package attack is Coffer's attack suite: black-box tests that attack a
// real server, started by internal/testserver and serving real HTTPS on a
// loopback port, on SQLite and on PostgreSQL.
//
// Each attack asserts the exact refusal (status code and problem+json or
// OAuth error body) and that the data it aimed at is unchanged afterwards:
// the records, clients and policy planted before the attack are read back
// and compared. Every submitted payload carries a marker string, and the
// error bodies and the server log are scanned for it, since neither may
// ever echo a submitted value.
//
// TestEveryRouteIsAttacked fails when the server gains a route that no
// attack case in the table covers.
//
// The suite must never change server code to pass: an attack that finds a
// server bug is written down as a failing (or, if it blocks the rest,
// skipped with "BUG:") test for the server's owners to fix.
package attack
