// Package envelope seals and opens single values with AES-256-GCM in a small
// versioned binary format, with additional data bound by the caller.
//
// It owns the byte format of every encrypted value Coffer stores and the one
// opaque error, [ErrDecrypt], that every failure to open returns. It must
// never tell callers why an envelope failed to open (no padding- or
// format-oracle), never reuse a nonce on purpose, never make randomness of
// its own (callers pass an io.Reader, crypto/rand.Reader outside tests), and
// never print, log or return key bytes or plaintext in an error.
//
// # Format
//
//	offset  size  field
//	0       1     format version, 0x01
//	1       4     key version, uint32 big-endian
//	5       12    nonce, random
//	17      n+16  AES-256-GCM ciphertext and tag
//
// The 5 header bytes are authenticated along with the caller's additional
// data (GCM additional data = header || aad), so neither the format nor the
// key version can be changed without Open failing, even by someone holding
// two AEADs built from the same key. The format is stable: envelopes written
// today must open with every later version of this package; a new layout
// takes a new format version byte.
//
// # Nonces and limits
//
// Nonces are 96 random bits, so a key version must seal fewer than 2^32
// values (NIST SP 800-38D §8.3); the keyring rotates long before that.
//
// # Additional data
//
// [AAD] encodes a list of strings without ambiguity. Callers bind each value
// to where it lives (collection, record id, field, key version), so an
// envelope copied to another record or field does not open there.
package envelope
