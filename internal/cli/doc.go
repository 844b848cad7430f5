// Package cli is Coffer's command line for its HTTP API: `coffer login`
// keeps a profile (URL, CA certificate, client id) in the user's config
// directory and the client secret in a 0600 file beside it; the other
// commands (records, tokens, transit, policy, audit events, clients, users,
// subjects) call the server through the Go SDK (package client) with that
// profile. Answers print as JSON (-o json) or as a table (-o table, the
// default on a terminal); long jobs print a progress line on standard error.
//
// It must never print a secret it did not create for the user (the secret
// of `coffer clients create` and `rotate` is shown once, as the API shows
// it), never take a secret as a flag (it would show in the process list),
// and never write the secret file with a mode other than 0600. It holds no
// server logic: cmd/coffer wires its commands beside the offline ones.
package cli
