// Package identity answers "who is calling": it keeps service clients and
// users, runs the OAuth 2.0 client-credentials grant and the password + TOTP
// login, issues and verifies access tokens with signing keys kept sealed in
// the store, revokes tokens across nodes, and locks out brute force with
// counts kept in the store so every node agrees: per account (each attempt
// reserved before its credential is checked), and per source address only
// for unknown or failing accounts once a larger spray budget is spent (see
// Lockout). Password hashing runs through a bounded gate, so logins cannot
// exhaust memory. It normalises usernames, and guards MFA enrolment of
// users whose roles require MFA with one-time codes admins issue.
//
// Access ends with its grant: every token carries its principal's
// generation, which each change that must end it raises (delete, disable,
// secret rotation, roles, attributes, MFA reset), and Authenticate reads
// the generation, the token's revocation and its signing key's state from
// the store with every request (Store.TokenState), never from a per-node
// cache, so that a change on one node is in force on all at once.
//
// Secrets (client secrets, passwords, TOTP codes, tokens) are only compared
// here, in constant time, and never logged, stored in the clear or put in an
// error.
package identity
