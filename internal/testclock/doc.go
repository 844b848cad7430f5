// Package testclock is a settable clock for tests that pin time: Now
// returns the time it holds and Advance moves it. It is test support only:
// nothing in a Coffer binary imports it.
//
// It must never be imported by non-test code: a pinned clock in a server
// would freeze token expiry, lockouts and key ages.
package testclock
