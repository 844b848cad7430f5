// Package auth holds Coffer's credential and token primitives: client ids
// and secrets, argon2id password hashes and the password policy, EdDSA JWT
// access tokens (RFC 9068) with their signing keys and JWKS, TOTP (RFC 6238),
// recovery and enrolment codes, username normalisation (PRECIS, RFC 8265,
// with look-alike folding), and the lockout arithmetic.
//
// It owns the cryptographic decisions about credentials — formats, parameters,
// algorithms, constant-time comparisons — and nothing else. It keeps no
// storage, serves no HTTP and decides no policy: package identity stores what
// this package makes and wires it into the server.
//
// # What it must never do
//
//   - put a secret, password, code or token into an error, a log or a String;
//   - compare a secret in variable time;
//   - make randomness or read the clock of its own: every function that makes
//     a secret, key, nonce or time takes an io.Reader or a Now func;
//   - hand-roll JWS: signing and verification go through go-jose, with EdDSA
//     as the only accepted algorithm;
//   - hold package-level mutable state.
//
// # Threat model
//
// Tokens come from anywhere: Verify treats its input as hostile, accepts
// only the exact compact serialisation Issue produces (so tokens are not
// malleable), and returns one opaque [ErrInvalidToken] for every failure so
// that callers cannot become an oracle. Stored hashes are trusted less than
// code but more than input: a malformed hash is refused, and argon2id
// parameters read back from a hash are bounded so that a tampered row cannot
// make a login burn gigabytes of memory.
package auth
