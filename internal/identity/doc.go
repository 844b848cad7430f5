// Package identity answers "who is calling": it keeps service clients and
// users, runs the OAuth 2.0 client-credentials grant and the password + TOTP
// login, issues and verifies access tokens with signing keys kept sealed in
// the store, revokes tokens across nodes, and locks out brute force by
// account and by source address with counts kept in the store so every node
// agrees.
//
// Secrets (client secrets, passwords, TOTP codes, tokens) are only compared
// here, in constant time, and never logged, stored in the clear or put in an
// error.
package identity
