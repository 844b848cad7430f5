// Package token replaces sensitive values with tokens and back: random
// tokens (opaque, the value sealed in the store), deterministic tokens (the
// same value gives the same token within a type, for joins) and
// format-preserving tokens (FF1, vaultless: nothing but the type and key
// version is stored). Every token's type is recoverable from the token
// itself or from its index row, so detokenize can check the caller's right
// on tokens/TYPE before it reveals anything.
//
// Rows are found by a keyed MAC of the token, never by the token, so a copy
// of the database yields neither values nor usable tokens. This package must
// never log or return in an error a value or a token.
package token
