// Package mask holds Coffer's maskers: pure functions that turn a sensitive
// value into a shape a person may see (last four of a card, initials of a
// name, a keyed pseudonym).
//
// It owns the mask names a collection may declare ("card", "email",
// "phone", "ssn", "name", "redact", "hash", "partial(first,last,char)"),
// their parsing, and the default mask of each field type. It must never
// store, log or return in an error the value it masks, and it must never
// panic: every input, including invalid UTF-8, gives a result.
//
// # What each mask shows
//
//   - card: every character but separators (space, dash) becomes "*" except
//     the last four digits, shown when the value has at least 12 digits:
//     "4111-1111-1111-1111" → "****-****-****-1111". Length is kept.
//   - ssn: as card with nine digits: "123-45-6789" → "***-**-6789"; a value
//     with fewer than nine digits is masked entirely. Length is kept.
//   - phone: digits become "*" except the last four (10 or more digits), three
//     (7–9) or two (5–6); fewer than five are all masked. "+", spaces, dashes,
//     dots and parentheses stay. Length is kept.
//   - email: the first character of the local part and of each domain label
//     stay, the rest becomes "*", the top-level domain stays:
//     "alice@example.com" → "a****@e******.com". A part of one character is
//     masked entirely. The mask's length follows the input's (the length of
//     a local part is rarely sensitive, and a fixed length would hide the
//     domain's shape that support staff rely on). A value without "@" is
//     masked like a single label.
//   - name: initials: "Ada Lovelace" → "A. L.".
//   - redact: "[REDACTED]" whatever the value.
//   - hash: "h:" and the first 16 hex digits of HMAC-SHA256 of the value
//     (Pseudonym, PseudonymInput): a stable pseudonym that joins equal
//     values without revealing them. The vault keys it per collection and
//     field (the keyring's mask/hash/COLLECTION/FIELD, rotatable), so
//     pseudonyms do not link across fields; a Masker uses its own key,
//     and without one it redacts.
//   - partial(first,last,char): the first and last runes stay, the others
//     become char ("*" when omitted); when first+last would show the whole
//     value, everything is masked.
package mask
