// Package transit is Coffer's encryption as a service: named, versioned
// keys that encrypt and decrypt values the caller keeps, like Vault's
// transit engine. Coffer stores no value here, only the keys.
//
// It owns the transit use cases — create, read, rotate, configure and
// delete a key; encrypt, decrypt and rewrap batches of values — the
// ciphertext format, the minimum decryption version, and rotation by use
// count and by age. Routes and SQL belong to the callers: the HTTP layer
// decodes requests into this package's types, and the store implements
// [Store].
//
// It must never return, log or store a plaintext, a context or a key; never
// tell a caller why a ciphertext does not decrypt (one opaque error for a
// tampered ciphertext, a wrong context, another key's ciphertext, a retired
// or too old version); never encrypt under a version below the key's
// minimum decryption version; and never act before the policy allowed it.
//
// # Keys and ciphertexts
//
// A transit key NAME ([a-z0-9_-]{1,64}) is the policy resource "keys/NAME".
// Its metadata lives in the [Store]; its material lives only in the keyring
// under the key id "transit/NAME", one data key per version, wrapped by the
// root key. A ciphertext is
//
//	coffer:vN:BASE64
//
// where BASE64 is the standard, padded base64 of a keyring envelope and N
// is the key version, which must equal the version in the envelope header
// (authenticated by AES-256-GCM). The optional context is bound as the
// envelope's additional data, envelope.AAD("transit", NAME, context), so a
// ciphertext decrypts only under its own key and with its own context.
// [ParseCiphertext] accepts exactly the strings [FormatCiphertext] writes,
// so a ciphertext cannot be altered into another that parses.
//
// # Actions
//
// Create, Rotate, Configure, Delete, Import, ImportVersion, ImportVault and
// WrappingKey need "admin"; Get needs "read";
// Encrypt needs "encrypt"; Decrypt needs "decrypt"; Rewrap needs both
// "decrypt" and "encrypt". Each call records its target in the caller's
// AccessNote (the policy action, or "rewrap" for Rewrap, on "keys/NAME")
// and the number of items in Count. A denied call does nothing else.
//
// # Batches
//
// Encrypt, Decrypt and Rewrap take up to Config.MaxBatch items, all or
// nothing: every item is checked before any is used, and one bad item
// fails the call. EncryptBatch, DecryptBatch and RewrapBatch take the same
// items as Vault's transit batch_input and answer its batch_results: each
// item succeeds or carries its own error, a message that names the field
// and never holds the value, and every ciphertext that does not open has
// the one opaque MsgUndecryptable, so a batch is no better an oracle than
// a single call. The policy, the key, the batch size and outages still
// fail the whole call. A batch's note counts the items that succeeded and
// its Reason says "batch of N: K ok, F failed".
//
// # Rotation
//
// A key rotates when an admin asks, and automatically before an encryption
// that would take the encryptions since the last rotation past
// Config.RotateAfter (default 2^31, half of the 2^32 messages NIST allows
// one AES-GCM key with random 96-bit nonces), or when its newest version
// is older than the key's auto_rotate_period. Age is checked on encryption:
// a key that encrypts nothing gathers no ciphertexts and needs no rotation.
//
// Encryptions are counted in memory per node and added to the store's
// count (Store.AddTransitEncryptions, one atomic increment) once a node has
// Config.FlushEvery unflushed encryptions of a key, and whenever
// [Service.Flush] runs: call it on a ticker and at shutdown. A node that
// dies loses at most its unflushed counts, and nodes rotating at once make
// one extra version; both are far inside the margin RotateAfter leaves.
// The store's latest version only rises (Store.RecordTransitVersion), so
// nodes rotating at once settle on the newest, and values are sealed
// only under the version it records, never a newer one the keyring holds
// but no rotation recorded.
//
// # Bring your own key
//
// [Service.Import] creates a key, and [Service.ImportVersion] adds a
// version, from a 32-byte key the caller brings, wrapped as in Vault's
// transit BYOK scheme: RSA-OAEP of a fresh AES-256 key under the
// deployment's RSA-4096 wrapping key ([Service.WrappingKey]), then RFC 5649
// key wrap with padding of the key under it. The wrapping key's private key
// is sealed by the keyring (key id "transit-byok/wrapping-key") in the
// [Meta] store and never leaves the process; an imported key is a keyring
// version like any other and is never exportable. Every ciphertext that
// does not unwrap is one 422, [MsgNotAKey]. Both need "admin", as Create;
// the name "wrapping_key" is reserved.
//
// # Import from Vault
//
// [Service.ImportVault] creates a key from the versions of a HashiCorp
// Vault transit key (aes256-gcm96, exportable, neither derived nor
// convergent), each wrapped as in Import: the client (`coffer keys
// import-vault`) reads them from Vault, so Coffer never talks to Vault.
// Each version keeps its number in the keyring (keyring ImportAt), the
// first is the minimum decryption version, and the key is marked
// (TransitKey.Origin "vault", VaultLatestVersion). A vault:vN: ciphertext
// of such a key whose version came from Vault is opened as Coffer's
// envelope and, failing that, as Vault sealed it ([ParseVaultNative]:
// nonce ‖ AES-256-GCM under the version's bytes, no additional data, the
// context unused as Vault does for keys that are not derived), with the
// one opaque error when neither opens. For every other key a vault:vN:
// text that is not an envelope is malformed, as before. What Coffer seals
// is always its own envelope.
//
// Names of deleted keys are not reused: the keyring never makes a new key
// for a destroyed key id, so creating a key under a deleted key's name is
// a conflict.
package transit
