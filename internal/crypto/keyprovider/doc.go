// Package keyprovider supplies Coffer's root key (the key-encryption key)
// behind the [Provider] interface: wrap and unwrap small secrets, nothing
// else.
//
// It owns the root key sources — a key file ([CreateFile], [OpenFile]), an
// environment variable ([FromEnv]), a PKCS#11 token ([OpenPKCS11]) and a key
// split into Shamir shares ([SplitRootKey], [NewSealed]); KMS providers
// later — and the one opaque error, [ErrUnwrap], by which every provider
// reports a wrapped key it cannot open (the way a wrong root key is
// detected).
//
// It must never put root key bytes, or anything it wraps or unwraps, in an
// error, a log or a String; never overwrite an existing key file; never
// accept a key file that its group or others may access; never take a root
// key out of a token; and never make randomness of its own beyond
// defaulting to crypto/rand.Reader.
//
// Nothing outside this package may assume the root key is in memory: a
// Provider is only Wrap, Unwrap and Name, which an HSM or a KMS can serve.
//
// # Local providers
//
// [Local] holds a 32-byte root key and wraps with AES-256-GCM in the
// envelope format (key version 1), binding a fixed label and the caller's
// additional data. A key file holds the key as standard base64 text on one
// line, mode 0600.
//
// # PKCS#11
//
// [PKCS11] keeps the root key on a token (an HSM; SoftHSM2 in tests): an
// AES-256 key object, sensitive and not extractable, that
// [CreatePKCS11Key] makes on the token. Wrap and Unwrap run AES-GCM there
// with a 12-byte IV made here, stored as format byte 1 || IV || ciphertext
// || tag, the caller's additional data bound as GCM AAD after a fixed
// label. It needs cgo and the build tag pkcs11; the default build is
// cgo-free and its [OpenPKCS11] returns [ErrPKCS11Unsupported]. The
// plaintext a token returns passes through memory the PKCS#11 binding
// frees without zeroing.
//
// # Shamir shares
//
// [SplitRootKey] makes a root key, splits it into shares (package shamir)
// for several people to keep, and returns a check blob: the threshold and
// share count, a commitment to each share (SHA-256 under a fixed label),
// and an AES-GCM seal of a constant under a key derived (HKDF-SHA256) from
// the root key, which authenticates everything before it. [Sealed] starts
// sealed, answering [ErrSealed], collects shares through [Sealed.Unseal]
// until the threshold, and once the combined key opens the check blob
// behaves as a [Local] over it.
//
// Shares arrive unauthenticated (anyone may reach a sealed server), so a
// share that is not the one committed to for its number is refused on
// submission ([ErrUnknownShare]) and never held: a stranger's forged
// shares cannot stand in the way of the holders' right ones. Check blobs
// written before commitments (format 1) are still read; with them a share
// is only refuted when threshold shares fail to combine, after which a
// share replaces the held one of its number; once unsealed,
// [Sealed.UpgradedCheck] gives the committed blob of the same split
// (every share follows from threshold right ones, [shamir.Evaluate]) to
// store in place of the old one.
package keyprovider
