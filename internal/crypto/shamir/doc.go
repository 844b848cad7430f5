// Package shamir splits a secret into shares, any threshold of which
// recover it and fewer of which reveal nothing about it (Shamir's secret
// sharing over GF(2^8)), and encodes shares as text for people to keep.
//
// It owns the field arithmetic, [Split], [Combine], [Evaluate] (any share
// of a split from threshold of them), and the share text format
// ([EncodeShare], [DecodeShare]) with its checksum.
//
// It must never put a secret or a share in an error, a log or a String;
// never make randomness of its own (the caller passes an io.Reader, in
// production crypto/rand.Reader); and never branch or index memory on a
// secret byte.
//
// # Scheme
//
// Each byte of the secret is the constant term of its own polynomial of
// degree threshold-1 over GF(2^8) (the AES field, x^8+x^4+x^3+x+1), whose
// other coefficients are uniformly random. Share i (i = 1…n) is the byte
// i followed by every polynomial evaluated at i. [Combine] interpolates
// (Lagrange) at 0. Any threshold-1 shares are consistent with every value
// of the secret, equally often: they carry no information about it.
//
// Multiplication is carry-less with masks and inversion is a fixed chain of
// squarings and multiplications, so the time taken does not depend on
// secret bytes; no lookup table is indexed by a secret. The x coordinates
// are public and need no such care.
//
// Shares are not authenticated: a wrong share makes [Combine] return a
// wrong secret, not an error. Verify the result (as keyprovider's Sealed
// does with its check blob); the text encoding's checksum only catches
// typing mistakes.
//
// # Share text
//
// A share is written as "cs1-" followed by the lowercase base32 (RFC 4648,
// no padding) of the share and its CRC-32, in groups of five letters
// joined by "-": for a 33-byte share, 12 groups. [DecodeShare] ignores
// case and surrounding white space, and accepts nothing else: one text per
// share.
package shamir
