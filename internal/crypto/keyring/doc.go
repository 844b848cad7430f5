// Package keyring keeps Coffer's versioned data keys: it makes them, wraps
// them under the root key through a [keyprovider.Provider], stores them
// through a [Store], and seals, opens and MACs values under them.
//
// It owns the life of a data key — created on first use, rotated, retired,
// destroyed — the derivation of the keys each version yields (one for
// AES-256-GCM, one for HMAC-SHA256, one handed out by [Keyring.Key]), the
// cache of unwrapped keys, and the check that the root key is the right one.
//
// It must never put a key, plain or wrapped, or a plaintext in an error or a
// log; never seal under a version's bytes themselves; never hand out the key that seals values; never make a new key for a
// key id that was destroyed; and never keep an unwrapped key it has evicted
// without zeroing it.
//
// # Keys and versions
//
// A key id names what a key protects ("collection/customers",
// "subject/42", "index/customers/email"). Each id has versions 1, 2, …; the
// highest active version encrypts, every active version decrypts, a retired
// version no longer decrypts (until [Keyring.Unretire]), destroying a
// retired version ([Keyring.DestroyVersion]) erases it alone for good, and
// destroying an id destroys every version (crypto-shredding); an id is
// destroyed when every version is. The audit log's keys ([PermanentPrefix]) rotate but
// are never retired or destroyed: verifying the log needs every version.
// A wrapped key is bound to its id and version through the wrap's
// additional data, so a wrapped key moved to another row does not unwrap.
//
// Each version's 32 random bytes are never used directly: HKDF-Expand
// (SHA-256) derives the AES-256-GCM key (info "coffer/keyring/v1/aead"),
// the HMAC-SHA256 key ("coffer/keyring/v1/mac") and the key [Keyring.Key]
// returns ("coffer/keyring/v1/key"), so no derived key reveals another.
// The one exception is a version brought from another system with the
// values it sealed there ([Keyring.ImportAt]): [Keyring.OpenForeign]
// opens those values under the version's bytes themselves, as that system
// sealed them; nothing is ever sealed that way, and which versions it is
// asked for is its caller's decision (transit: only the versions imported
// from Vault).
//
// # Cache and nodes
//
// Unwrapped versions are cached with their built AEAD, so sealing and
// opening do no unwrap and no cipher setup; entries older than CacheTTL are
// reloaded from the Store on next use, and versions whose wrapped bytes did
// not change are kept rather than unwrapped again. Several nodes share one
// Store: another node's rotation is used for sealing within CacheTTL, an
// envelope of a version newer than any cached one reloads at once, and
// another node's retirement or destruction takes effect here within
// CacheTTL (at once on the node that did it).
//
// # Use counts
//
// AES-GCM with random 96-bit nonces stays safe for about 2^32 encryptions
// per key (NIST SP 800-38D); past that a nonce collision, which reveals
// the authentication key, becomes too likely. So every Seal is counted
// per (key id, version): an atomic add on the cached version, nothing
// allocated. [Keyring.FlushUses] adds this node's counts to the Store's
// ([UseStore], coffer.DataKey.Uses), which every node adds to; a version
// that leaves the cache hands its count on first, and a count that cannot
// be written is kept for the next flush. [Keyring.Uses] is the Store's
// count plus this node's unflushed one. [Keyring.Reseal], which the rewrap
// after a rotation uses to move values to the new version, counts like
// Seal and also in a second count per version (coffer.DataKey.RewrapUses,
// flushed with the first in one step): a version whose uses are mostly its
// own values resealed is not made safer by another rotation, which would
// only reseal them again. The keyring only counts: the lifecycle jobs
// rotate a key whose current version is too used (or too old), as an
// operator would.
//
// # Root key rotation
//
// [Keyring.RewrapRoot] adopts a new root key: it unwraps every stored
// version under the old Provider and wraps it under the new one with the
// same additional data, replacing each row by compare-and-swap through a
// [RootRewrapStore], so a concurrent destruction is never undone. Values are
// not touched. [Keyring.Check]'s key is rewrapped last, so a node started
// with the new root key refuses to serve until the move is complete. While
// it runs this keyring wraps under the new root key and unwraps under
// either; after a failure it wraps under the old one again, still unwraps
// under either, and running it again finishes the move. The
// cache needs no change, as it keys versions by their wrapped bytes.
package keyring
