// Package vaultcompat serves Coffer's transit engine in the dialect of
// HashiCorp Vault's transit secrets engine, so that applications, SDKs and
// scripts written for Vault's transit API work against Coffer unchanged:
// the same paths under a mount (transit/ by default), the same request
// fields, the same JSON envelope ({"request_id", "data", "warnings", …}),
// Vault's error shape ({"errors":[…]}) and status codes, ciphertexts and
// HMACs prefixed vault:vN:, and the access token in X-Vault-Token.
//
// It owns only the translation. Every call is one call of the transit use
// cases (internal/transit) through the server's one request stack
// (internal/httpapi): authenticated (a Coffer access token, sent as
// X-Vault-Token or Authorization: Bearer; never a Vault token), decided by
// Coffer's policy on keys/NAME exactly as /v1/keys is, rate-limited, and
// audited before the answer, with its targets. A vault:vN: ciphertext is
// the same envelope as Coffer's coffer:vN: one, and each decrypts on both
// surfaces.
//
// It must never return, log or audit a plaintext, a context, an input, a
// key or a MAC; never accept a request that would make key material
// leave Coffer (exportable keys, plaintext backups) or weaken it (derived
// or convergent keys, other key types): those are refused with 400, as
// Vault refuses what it does not support; and never answer differently
// from Coffer's own API on whether a ciphertext decrypts (one opaque
// message, whatever the reason).
//
// # Coverage
//
// keys (create, read, list with ?list=true, rotate, config, import and
// import_version with wrapping_key), encrypt, decrypt, rewrap (single and
// batch_input), hmac and verify (HMAC only), datakey plaintext|wrapped.
// Not covered: Vault's other engines and auth methods, key deletion (use
// DELETE /v1/keys/NAME), export, backup/restore, sign/verify with
// signatures, hash, random, trim, cache-config, convergent and derived
// keys, encrypting under a version other than the latest, and upsert on
// encrypt (Coffer behaves as Vault with disable_upsert). See
// docs/vault-compat.md.
package vaultcompat
