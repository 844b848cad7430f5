// Package identityadmin is the administration of clients and users: who
// may list, create, change, disable, delete, rotate the secret of, or reset
// the second factor of a principal, and the one grant rule that decides
// who may hand out which roles and attributes (see grants.go).
//
// Every decision about administering principals is made here, on the
// policy in force; the HTTP handlers only decode, call and encode.
// This package must never store anything itself (identity does), never
// decide another way than the grant rule, and never put a password or a
// client secret in an error or an audit note.
package identityadmin
