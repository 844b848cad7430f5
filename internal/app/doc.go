// Package app is Coffer's composition root: it builds every component from
// the configuration (root key provider, store, keyring, identity, policy,
// audit, vault, HTTP server), runs `init`, `migrate` and `serve`, and shuts
// down in order. cmd/coffer holds only flags and exit codes on top of it,
// and the end-to-end tests drive it on port 0 with a temporary directory.
//
// It holds no business rules and must never print a secret except the one
// place the contract says so: the admin client's credentials, once, at init.
package app
