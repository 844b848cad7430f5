// Package archtest keeps Coffer's architecture true with tests, in the
// style of tailscale's tstest/deptest and pkgdoc_test: which packages may
// import which (the store only the domain and envelope, the composition
// root only from the command, the HTTP adapter never the store, the key
// ring or the policy engine, test support never in the binary), and that
// every package's doc comment says what the package must never do. docs/architecture.md draws the layers
// these rules keep.
//
// It reads source files only (imports and doc comments, with go/parser);
// it must never import a Coffer package or build one, so it stays fast and
// cannot be bent by the code it checks.
package archtest
