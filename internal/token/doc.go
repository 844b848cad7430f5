// Package token replaces sensitive values with tokens and back: random
// tokens (opaque, the value sealed in the store), deterministic tokens (the
// same value gives the same token within a type, for joins) and
// format-preserving tokens (FF1, vaultless: nothing but the type, key
// version and the options the token was made with is stored, so a change
// of options never changes what a token means). Every token's type is
// recoverable from the token itself or from its index row, so detokenize
// can check the caller's right on tokens/TYPE before it reveals anything.
//
// Deterministic and format-preserving tokens are linkable: whoever may
// make them can tokenize guesses and compare, which for low-entropy values
// is as good as detokenize. So they need the policy action
// tokenize_linkable; tokenize alone makes random tokens. Detokenize decides
// before any lookup, so its answer never says whether a token exists to a
// caller who could not detokenize it.
//
// Rows are found by a keyed MAC of the token, never by the token, so a copy
// of the database yields neither values nor usable tokens. This package must
// never log or return in an error a value or a token.
package token
