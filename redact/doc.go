// Package redact finds sensitive values in free text and hides them, and
// offers a log/slog handler that does so for an application's logs.
//
// It is public: any Go program may import it, not only Coffer. It owns the
// detectors, the overlap rules between them and the redacting handler. It
// must never keep, log or return the text it inspects anywhere but in its
// results, and it must never panic on any input.
//
// # Detectors
//
// Find scans the text once, left to right, looking only at positions where
// a value may start (the start of a word, "+", "(", "-----BEGIN"). It uses
// no regular expressions, so its cost is linear in the text. Each detector
// validates what it matches:
//
//   - card_number: 13–19 digits, optionally in groups split by single spaces
//     or by single dashes (one kind per number), Luhn-valid, and in a known
//     issuer range with a length that issuer uses (Visa 4; Mastercard 51–55,
//     2221–2720; Amex 34, 37; Discover 6011, 644–649, 65; JCB 3528–3589;
//     Diners 36, 38, 300–305; UnionPay 62).
//   - email: local@domain with at least two domain labels and an alphabetic
//     top-level domain of two or more letters.
//   - phone: E.164 ("+14155550123", also with spaces, dashes, dots or a
//     parenthesised group) and North American forms "(415) 555-0123",
//     "415-555-0123", "415.555.0123" whose area code and exchange start with
//     2–9. Bare digit runs are not phones (they are ids and timestamps).
//   - ssn: "AAA-GG-SSSS" with a valid area (not 000, 666 or 9xx), group (not
//     00) and serial (not 0000); nine bare digits only when "ssn" or "social
//     security" appears in the 32 bytes before them, with lower confidence.
//   - iban: a country code with its registered length, check digits and
//     mod-97 == 1, compact or in groups of four.
//   - ipv4: four dotted decimal octets ≤ 255 without leading zeros, not part
//     of a longer dotted number. A version number such as "1.2.3.4" is a
//     valid IPv4 address and is reported (we cannot tell them apart, and
//     hiding a version number is cheap); "v1.2.3.4" is not.
//   - ipv6: what net/netip parses as IPv6, with "::" or eight groups; times
//     ("12:34:56") and MAC addresses are not IPv6.
//   - jwt: three base64url parts whose header decodes to a JSON object with
//     an "alg" member.
//   - api_key: AWS access key ids (AKIA…, ASIA…), GitHub tokens (ghp_, gho_,
//     ghu_, ghs_, ghr_, github_pat_), Slack tokens (xoxb-, xoxp-, …), Stripe
//     secret and restricted keys (sk_live_, rk_live_, sk_test_, rk_test_),
//     Google API keys (AIza…).
//   - private_key: a PEM "-----BEGIN … PRIVATE KEY-----" block through its
//     END line (or the header alone when the END line is missing).
//
// Findings never overlap: where two detectors match overlapping text, the
// higher confidence wins, then the longer match.
//
// # Redaction and logs
//
// Redact replaces each finding with its mask (ModeMask: cards keep their
// last four, emails their initials — see internal/mask — and types without
// a fitting mask get their placeholder) or with a placeholder such as
// "[EMAIL]" (ModePlaceholder).
//
// NewHandler wraps any slog.Handler: it redacts the message and every
// string attribute (through groups, LogValuers, errors and Stringers), and
// replaces the whole value of any attribute whose key names a secret
// ("password", "api_key", "authorization", …).
package redact
