// Package keyprovider supplies Coffer's root key (the key-encryption key)
// behind the [Provider] interface: wrap and unwrap small secrets, nothing
// else.
//
// It owns the root key sources — a key file ([CreateFile], [OpenFile]) and
// an environment variable ([FromEnv]) today, HSM and KMS providers later —
// and the one opaque error, [ErrUnwrap], by which every provider reports a
// wrapped key it cannot open (the way a wrong root key is detected).
//
// It must never put root key bytes, or anything it wraps or unwraps, in an
// error, a log or a String; never overwrite an existing key file; never
// accept a key file that its group or others may access; and never make
// randomness of its own beyond defaulting to crypto/rand.Reader.
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
package keyprovider
