// Package fpe makes format-preserving tokens of typed values on top of FF1
// (internal/token/ff1): a token has the value's length, its character
// classes and its separators, and only the holder of the 32-byte key can
// turn it back.
//
// It owns the choice of what to encipher for each field type and nothing
// else: no storage, no key management, no HTTP. It must never put a value,
// a token or a key into an error message; callers branch on the sentinel
// errors (ErrDomainTooSmall maps to 422).
//
// # What is enciphered
//
// Every ASCII digit is enciphered as a decimal digit and every ASCII letter
// as a letter of the same case; everything else (spaces, dashes, dots, "@",
// "+", parentheses, non-ASCII runes) stays where it is. Letters form one
// alphabet of 26 regardless of case: the value's letters are enciphered
// together and each output letter takes the case of the input letter at its
// position, so case is kept per position and short runs of one case do not
// make a domain of their own.
//
// When a value mixes digits and letters, the enciphered characters are read
// as one mixed-radix number (radix 10 for digit positions, 26 for letter
// positions), that number is enciphered with FF1 over decimal digits, and
// cycle walking keeps the result inside the value's domain. When every
// enciphered character is of one class, FF1 runs directly over that class.
//
// Per type:
//
//   - card_number: digits, single spaces or dashes; 12–19 digits; must pass
//     the Luhn check. The last four digits (and with KeepFirstSix the first six)
//     stay; they and the options form the FF1 tweak. The first middle digit is
//     not enciphered: since the input is Luhn-valid it is redundant, and the
//     token sets it so that the token's Luhn sum is a non-zero residue (the
//     token fails Luhn and cannot be taken for a card) or zero with LuhnValid.
//     Detokenize deciphers the other middle digits and recomputes that digit.
//     With KeepFirstSix a 16-digit card leaves only five free digits, fewer
//     than FF1's minimum domain, and is refused; 17–19 digit cards work.
//   - ssn, phone, date, integer: the digits (KeepLast keeps the last N).
//     Date tokens are not calendar dates.
//   - email: the local part and every domain label but the top-level domain
//     are enciphered; "@", dots, the TLD and non-alphanumeric characters stay.
//     "alice@example.com" becomes something like "qbtzm@hrlwuyd.com".
//   - string: every ASCII letter and digit.
//
// The tweak binds each token to the package version, the type, the options
// and the value's shape (which positions are digits, lower or upper letters,
// and every kept character), so a token detokenizes only under the same type
// and options it was made with.
//
// A value whose enciphered part has fewer than 1,000,000 possible values is
// refused with ErrDomainTooSmall: FF1 is not secure on smaller domains, and
// a small domain can be enumerated anyway.
package fpe
