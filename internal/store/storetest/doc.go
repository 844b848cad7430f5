// Package storetest opens real stores for tests: a SQLite file in a
// temporary directory and, where PostgreSQL is reachable, a fresh schema in
// the test database that is dropped when the test ends, so runs never
// collide. In CI (CI=true) an unreachable PostgreSQL fails the test instead
// of skipping it.
//
// It is imported only by tests and must never be linked into the server.
package storetest
