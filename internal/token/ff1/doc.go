// Package ff1 implements the FF1 format-preserving encryption mode of
// NIST SP 800-38G (Rev. 1) over AES-128, AES-192 and AES-256.
//
// It owns the FF1 algorithm and nothing else: numeral strings in, numeral
// strings of the same length and radix out. Choosing what to encipher (which
// characters of a card number, which tweak) belongs to the caller, see
// internal/token/fpe.
//
// # Security
//
// FF1 is a deterministic cipher: the same key, tweak and input always give
// the same output. Its security rests on the domain being large enough; New
// derives the minimum length from the radix so that radix^minlen ≥ 1,000,000,
// as SP 800-38G Rev. 1 requires, and Encrypt and Decrypt refuse anything
// shorter. Use a tweak that binds the ciphertext to its context wherever one
// exists.
//
// The package must never put an input, an output, a tweak or a key into an
// error message: errors are fixed sentinels (see ErrLength, ErrNumeral, …)
// that callers branch on with errors.Is.
//
// # Performance
//
// When radix^ceil(n/2) fits in a uint64 (for decimal digits: up to 38 digits)
// the Feistel rounds run on uint64 arithmetic with no big.Int and one
// allocation for scratch space; longer inputs fall back to math/big. The AES
// key schedule is computed once in New and the CBC-MAC state over P and the
// constant blocks of Q is computed once per call, not once per round.
//
// # Compatibility
//
// Output is bit-for-bit the FF1 of the standard: the package is tested
// against every FF1 sample of NIST's examples document and differentially
// against github.com/capitalone/fpe/ff1.
package ff1
