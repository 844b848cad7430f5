// Package policystore keeps the policy in force: it loads the document from
// the store at start (or the bootstrap policy when none was saved), swaps in
// a new one atomically only when the whole document compiles, persists it,
// and polls the store so every node picks up a change made on another.
//
// It must never keep a policy that did not compile, and never grant anything
// while no policy is loaded: the zero state denies.
package policystore
